"""Background jobs (training): the worker that runs one, and the runners that start workers."""
