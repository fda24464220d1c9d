"""The prediction service: FastAPI app, model holder with hot swap and fallback, capture store."""
