"""The run record (``run.json``): inputs with hashes, parameters, versions, timings and counts."""

import hashlib
import importlib.metadata
import json
import platform
import sys

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

__all__ = ["collect_counters", "file_sha256", "package_versions", "write_json"]

_PACKAGES = (
    "skewless",
    "tensorflow",
    "tensorflow-transform",
    "tfx-bsl",
    "apache-beam",
    "tensorflow-metadata",
    "pyarrow",
    "numpy",
)
_CHUNK = 8 << 20


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, read in chunks (never whole into memory), local or remote."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run's results depend on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_json(path: str, payload: dict) -> None:
    """Writes ``payload`` as indented JSON to a local or remote path."""
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(payload, indent=2, sort_keys=True, default=str).encode() + b"\n")


def command_line() -> list[str]:
    """The command line of this process."""
    return list(sys.argv)


def collect_counters(result) -> dict[tuple[str, str], int]:
    """Sums the pipeline's counters over steps, keyed by (namespace, name)."""
    totals: dict[tuple[str, str], int] = {}
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        key = (counter.key.metric.namespace, counter.key.metric.name)
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[key] = totals.get(key, 0) + int(value or 0)
    return totals
