"""Getting events out: the outbox is the delivery queue, one entry per (event, destination)."""
