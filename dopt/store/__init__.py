"""What lives under the working directory: paths, the run record, checkpoints, the journal, the lock, atomic writes."""
