"""PyTorch models for tabular data: the model factory, the deterministic training loop, metrics and plots.

Free of MLflow and of the pipeline: these functions take arrays and settings and return models and
numbers, so they are tested on their own and reused by ``pipeline.modeling``.
"""
