"""Several processes: the launcher, the communicator, the run context, spawning one process per GPU."""
