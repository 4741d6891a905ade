"""Everything the bridge keeps in Redis: every key and field (:mod:`.keys`), every atomic step as a
Lua script (``lua/``, loaded by :mod:`.scripts`), watches, trackers, events and the outbox
(:mod:`.redis_store`), and the layout version with its upgrade steps (:mod:`.layout`)."""
