"""One module per command: run, validate, analyze, train, init. Commands never import each other."""
