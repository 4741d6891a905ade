"""A worker process: a poll loop and a delivery loop, arq beside them for the sweeper and Slack
follow-ups.

- :mod:`.settings`: arq's options from the bridge's settings, the health record.
- :mod:`.runtime`: the process's parts between startup and shutdown, and its jobs.
- :mod:`.arq_compat`: everything written against arq's internals (one arq version).

``bridge worker`` and ``arq workers.settings.WorkerSettings`` both run
:class:`~.arq_compat.BridgeWorker`, which waits through a Redis outage and makes shutdown prompt and
bounded: on SIGTERM the poll and delivery loops stop claiming at once and drain beside arq's jobs,
all within ``BRIDGE_WORKER_DRAIN_S``; whatever is still running is handed back, and the process
exits at the latest ``WORKER_EXIT_MARGIN_S`` later.
"""
