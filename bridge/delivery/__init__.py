"""Getting events out: the outbox becomes one delivery job per (event, destination)."""
