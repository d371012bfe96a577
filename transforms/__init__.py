"""Preprocessing functions: one module per dataset, each with a module-level ``preprocessing_fn``."""
