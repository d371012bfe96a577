"""Serving: a baseline model, the Python API over an exported graph, the REST server."""
