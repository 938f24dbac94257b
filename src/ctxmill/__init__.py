"""ctxmill: manufacture the context for an AI coding agent's task."""

__version__ = "0.1.0"
