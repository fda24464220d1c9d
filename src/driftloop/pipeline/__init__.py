"""Pipelines: declared steps, the artifact catalog, run records, the runner and its executors."""
