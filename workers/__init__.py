"""arq worker entry points (``arq workers.settings.WorkerSettings``)."""
