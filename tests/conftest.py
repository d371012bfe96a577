"""Shared fixtures."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session", autouse=True)
def lineage_store(tmp_path_factory):
    """Every test records lineage into a store of its own session, never the user's."""
    path = tmp_path_factory.mktemp("lineage") / "lineage.db"
    previous = os.environ.get("SKEWLESS_LINEAGE_DB")
    os.environ["SKEWLESS_LINEAGE_DB"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SKEWLESS_LINEAGE_DB", None)
    else:
        os.environ["SKEWLESS_LINEAGE_DB"] = previous


@pytest.fixture(scope="session")
def taxi_dataset():
    import schemas

    return schemas.load_dataset("taxi")
