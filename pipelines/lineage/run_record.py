"""The run record (``run.json``): inputs with hashes, parameters, versions, timings and counts."""

import concurrent.futures
import hashlib
import importlib.metadata
import platform
import sys
import threading

from apache_beam.metrics.metric import MetricsFilter

from pipelines.io import files

__all__ = [
    "FileHashes",
    "collect_counters",
    "file_sha256",
    "files_sha256",
    "package_versions",
    "require_transform_output",
    "write_json",
]

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


_LOCAL_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes, read in chunks (never whole into memory), local or remote.

    A local file is hashed once per process while its size and modification time stay the same (a run
    with a dedup stage or an analysis cache needs its inputs' hashes at two places).
    """
    key = files.local_fingerprint(path)
    if key in _LOCAL_HASHES:
        return _LOCAL_HASHES[key]
    digest = hashlib.sha256()
    with files.open_read(path) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    if key:
        _LOCAL_HASHES[key] = digest.hexdigest()
    return digest.hexdigest()


def files_sha256(paths: list[str], threads: int = 2) -> dict[str, str]:
    """``{path: SHA-256}`` of several files, hashed ``threads`` at a time: ``hashlib`` and file
    reads release the GIL, so several files hash in parallel. One thread, or one
    file, is hashed in the calling thread."""
    if threads <= 1 or len(paths) <= 1:
        return {path: file_sha256(path) for path in paths}
    with concurrent.futures.ThreadPoolExecutor(min(threads, len(paths))) as pool:
        return dict(zip(paths, pool.map(file_sha256, paths), strict=True))


class FileHashes:
    """Hashes files on a background thread while the caller does other work (the pipeline).

    On Dataflow the driver is idle while the job runs, so its inputs' hashes (read back from ``gs://``)
    do not add to the run after it. Locally it is about even: ``hashlib`` and file reads release the
    GIL, so the inputs are hashed beside the pipeline, which then has less of the machine. The
    thread is a daemon: a failed run does not wait for it.

    Args:
        paths: The files to hash (local or any Beam filesystem).
    """

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        self._hashes: dict[str, str] = {}
        self._error: Exception | None = None
        self._thread = threading.Thread(
            target=self._hash_all, args=(list(paths),), name="skewless-hash-inputs", daemon=True
        )
        self._thread.start()

    def _hash_all(self, paths: list[str]) -> None:
        try:
            self._hashes = files_sha256(paths, threads=1)  # one at a time: the pipeline has the cores
        except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread by result()
            self._error = error

    def result(self) -> dict[str, str]:
        """Waits for the hashes; returns ``{path: sha256}``, or raises the hashing's error."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._hashes


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run's results depend on."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


json_safe = files.json_safe
to_json = files.to_json
write_json = files.write_json


def require_transform_output(directory: str, command: str) -> dict:
    """The ``run.json`` of ``directory`` if it holds a succeeded ``skewless run``'s transform output.

    A run that failed a check publishes only its record, dead letters and raw statistics, so that
    ``check-skew``, ``train`` or ``compare-poc`` pointed at it would fail deep inside TensorFlow on
    a missing schema file: they are told why instead.

    Raises:
        UsageError: No ``run.json``, or the run did not succeed (its reason quoted).
    """
    from pipelines.errors import UsageError

    path = files.join(directory, "run.json")
    if not files.exists(path):
        raise UsageError(f"{directory} has no run.json: is it a `skewless run` output?")
    record = files.read_json(path)
    if record.get("status") != "succeeded":
        raise UsageError(
            f"{directory} holds a run that {record.get('status', 'did not finish')} "
            f"({record.get('reason') or 'no reason recorded'}): it has no transform output for {command}"
        )
    return record


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
