"""Shared fixtures."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def taxi_dataset():
    import schemas

    return schemas.load_dataset("taxi")
