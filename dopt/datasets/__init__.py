"""Small synthetic data sets for demos and tests, generated offline without a framework."""
