"""Shared fixtures."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


KINDS = ("unit", "pipeline", "e2e", "browser")


def pytest_collection_modifyitems(config, items):
    """Every test says what kind it is (``pytestmark`` of its module, or its own marker), so that
    ``make test-fast`` (``-m "not e2e and not browser"``) leaves out exactly the slow ones."""
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(kind) for kind in KINDS)]
    if unmarked:
        raise pytest.UsageError(f"tests without a kind marker ({', '.join(KINDS)}): {', '.join(unmarked[:5])}")


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
