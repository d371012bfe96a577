"""Provenance and lineage: what every command read and wrote, in an embedded SQLite store.

Modelled like ML Metadata: ``artifacts`` (a file or directory at a content hash), ``executions``
(one command run: command line, parameters, times, status, versions, git commit, runner),
``events`` (which artifacts an execution read and wrote) and ``contexts`` (the dataset or labelling
project an execution belongs to), plus ``sources`` (the data inventory of ``sources.yaml``).

The store is ``--lineage-db``, else ``$SKEWLESS_LINEAGE_DB``, else
``$XDG_DATA_HOME/skewless/lineage.db`` (``~/.local/share/skewless/lineage.db``). It runs in WAL
mode with a busy timeout and retries, so concurrent runs can record at once. When OpenLineage is
configured (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG`` or ``OPENLINEAGE__TRANSPORT__*``), START,
COMPLETE and FAIL run events with input/output datasets and schema facets are emitted too.
"""

import contextlib
import datetime
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterable

from pipelines.errors import UsageError
from pipelines.io import files

__all__ = ["LineageStore", "content_hash", "default_db_path", "schema_hash"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL,
    type TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER,
    rows INTEGER,
    schema_hash TEXT,
    properties TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (uri, content_hash)
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    argv TEXT,
    parameters TEXT,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    versions TEXT,
    git_commit TEXT,
    runner TEXT,
    context_id INTEGER REFERENCES contexts (id),
    job_id TEXT,
    worker_environment TEXT
);
CREATE TABLE IF NOT EXISTS events (
    execution_id TEXT NOT NULL REFERENCES executions (id),
    artifact_id INTEGER NOT NULL REFERENCES artifacts (id),
    kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
    name TEXT,
    PRIMARY KEY (execution_id, artifact_id, kind)
);
CREATE TABLE IF NOT EXISTS contexts (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (type, name)
);
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY,
    properties TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_artifact ON events (artifact_id, kind);
CREATE INDEX IF NOT EXISTS artifacts_by_uri ON artifacts (uri);
"""
_RETRIES = 20


def default_db_path() -> str:
    """``$SKEWLESS_LINEAGE_DB``, else the user's data directory."""
    if os.environ.get("SKEWLESS_LINEAGE_DB"):
        return os.environ["SKEWLESS_LINEAGE_DB"]
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "skewless", "lineage.db")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def normalise_uri(uri: str) -> str:
    return files.absolute(uri)


def content_hash(uri: str) -> tuple[str, int]:
    """SHA-256 of a file, or of a directory tree (over sorted relative paths and file hashes).

    Returns:
        ``(hex digest, total bytes)``. Files are read in chunks, never whole.
    """
    if files.exists(uri):
        return _file_hash(uri)
    names = files.list_files(uri)  # a directory (on an object store, a name prefix)
    if not names and not files.is_dir(uri):
        raise FileNotFoundError(f"no file or directory {uri}")
    digest, total = hashlib.sha256(), 0
    for name in names:
        file_digest, size = _file_hash(files.join(uri, name))
        digest.update(f"{name}\0{file_digest}\n".encode())
        total += size
    return digest.hexdigest(), total


def _file_hash(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with files.open_read(path) as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


class LineageStore:
    """The SQLite lineage store.

    Args:
        path: Database file (created with its folder when missing).
    """

    def __init__(self, path: str | None = None):
        self.path = path or default_db_path()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._connection.row_factory = sqlite3.Row
        self._retry(lambda: self._connection.execute("PRAGMA journal_mode=WAL"))
        self._connection.execute("PRAGMA busy_timeout=30000")
        self._connection.execute("PRAGMA foreign_keys=ON")
        self._retry(lambda: self._connection.executescript(_SCHEMA))
        self._retry(self._add_missing_columns)

    def _add_missing_columns(self) -> None:
        """Adds the columns later versions record to a store an earlier version created."""
        present = {row["name"] for row in self._connection.execute("PRAGMA table_info(executions)")}
        for column in ("job_id", "worker_environment"):
            if column not in present:
                self._connection.execute(f"ALTER TABLE executions ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self._connection.close()

    def _retry(self, action):
        for attempt in range(_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error) or attempt == _RETRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextlib.contextmanager
    def _transaction(self):
        def begin():
            self._connection.execute("BEGIN IMMEDIATE")

        self._retry(begin)
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------------

    def start_execution(self, execution: dict, context: tuple[str, str] | None) -> None:
        with self._transaction() as db:
            context_id = None
            if context:
                db.execute("INSERT OR IGNORE INTO contexts (type, name) VALUES (?, ?)", context)
                context_id = db.execute("SELECT id FROM contexts WHERE type = ? AND name = ?", context).fetchone()["id"]
            db.execute(
                "INSERT INTO executions (id, command, argv, parameters, started_at, status, versions, git_commit,"
                " runner, context_id, worker_environment) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (
                    execution["id"],
                    execution["command"],
                    json.dumps(execution["argv"]),
                    json.dumps(execution["parameters"], default=str),
                    execution["started_at"],
                    json.dumps(execution["versions"]),
                    execution["git_commit"],
                    execution["runner"],
                    context_id,
                    json.dumps(execution.get("worker_environment")),
                ),
            )

    def finish_execution(
        self, execution_id: str, status: str, reason: str | None, artifacts: list[dict], job_id: str | None = None
    ) -> None:
        with self._transaction() as db:
            for artifact in artifacts:
                db.execute(
                    "INSERT OR IGNORE INTO artifacts (uri, type, content_hash, size, rows, schema_hash, properties,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        artifact["uri"],
                        artifact["type"],
                        artifact["content_hash"],
                        artifact.get("size"),
                        artifact.get("rows"),
                        artifact.get("schema_hash"),
                        json.dumps(artifact.get("properties") or {}),
                        now(),
                    ),
                )
                artifact_id = db.execute(
                    "SELECT id FROM artifacts WHERE uri = ? AND content_hash = ?",
                    (artifact["uri"], artifact["content_hash"]),
                ).fetchone()["id"]
                db.execute(
                    "INSERT OR IGNORE INTO events (execution_id, artifact_id, kind, name) VALUES (?, ?, ?, ?)",
                    (execution_id, artifact_id, artifact["kind"], artifact.get("name")),
                )
            db.execute(
                "UPDATE executions SET status = ?, reason = ?, ended_at = ?, job_id = ? WHERE id = ?",
                (status, reason, now(), job_id, execution_id),
            )

    def register_sources(self, sources: dict[str, dict]) -> None:
        with self._transaction() as db:
            for name, properties in sources.items():
                db.execute(
                    "INSERT OR REPLACE INTO sources (name, properties, registered_at) VALUES (?, ?, ?)",
                    (name, json.dumps(properties, default=str), now()),
                )

    # -- reading ---------------------------------------------------------------------------------

    def _artifact_rows(self, ids: Iterable[int]) -> list[dict]:
        ids = sorted(set(ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return [dict(r) for r in self._connection.execute(f"SELECT * FROM artifacts WHERE id IN ({marks})", ids)]

    def resolve(self, reference: str) -> list[int]:
        """Artifact ids for a path (every recorded version), a content-hash prefix or an id."""
        uri = normalise_uri(reference)
        rows = self._connection.execute(
            "SELECT id FROM artifacts WHERE uri = ? OR uri = ?", (uri, reference)
        ).fetchall()
        if not rows and len(reference) >= 6 and all(c in "0123456789abcdef" for c in reference.lower()):
            rows = self._connection.execute(
                "SELECT id FROM artifacts WHERE content_hash LIKE ?", (reference.lower() + "%",)
            ).fetchall()
        if not rows and reference.isdigit():
            rows = self._connection.execute("SELECT id FROM artifacts WHERE id = ?", (int(reference),)).fetchall()
        return [r["id"] for r in rows]

    def _walk(self, start: list[int], direction: str) -> list[dict]:
        """Transitive closure: ``downstream`` follows input -> execution -> output; ``upstream`` back."""
        first, then = ("input", "output") if direction == "downstream" else ("output", "input")
        seen, frontier, found = set(start), list(start), []
        while frontier:
            marks = ",".join("?" * len(frontier))
            rows = self._connection.execute(
                f"SELECT DISTINCT e2.artifact_id AS id, e2.execution_id AS execution FROM events e1 "
                f"JOIN events e2 ON e1.execution_id = e2.execution_id AND e2.kind = ? "
                f"WHERE e1.kind = ? AND e1.artifact_id IN ({marks})",
                [then, first, *frontier],
            ).fetchall()
            frontier = []
            for row in rows:
                if row["id"] not in seen:
                    seen.add(row["id"])
                    frontier.append(row["id"])
                    found.append((row["id"], row["execution"]))
        artifacts = {a["id"]: a for a in self._artifact_rows(i for i, _ in found)}
        return [dict(artifacts[i], execution=e) for i, e in found]

    def downstream(self, reference: str) -> list[dict]:
        """Everything built, transitively, from the referenced artifact."""
        return self._walk(self._require(reference), "downstream")

    def upstream(self, reference: str) -> list[dict]:
        """Everything the referenced artifact was built from, transitively."""
        return self._walk(self._require(reference), "upstream")

    def _require(self, reference: str) -> list[int]:
        ids = self.resolve(reference)
        if not ids:
            raise UsageError(f"no recorded artifact matches {reference!r}")
        return ids

    def runs(self, limit: int = 50) -> list[dict]:
        return [
            dict(r)
            for r in self._connection.execute(
                "SELECT x.id, x.command, x.status, x.reason, x.started_at, x.ended_at, c.name AS context,"
                " (SELECT COUNT(*) FROM events WHERE execution_id = x.id AND kind = 'input') AS inputs,"
                " (SELECT COUNT(*) FROM events WHERE execution_id = x.id AND kind = 'output') AS outputs"
                " FROM executions x LEFT JOIN contexts c ON c.id = x.context_id"
                " ORDER BY x.started_at DESC, x.rowid DESC LIMIT ?",
                (limit,),
            )
        ]

    def show(self, run_id: str) -> dict:
        rows = self._connection.execute("SELECT * FROM executions WHERE id LIKE ?", (run_id + "%",)).fetchall()
        if len(rows) != 1:
            raise UsageError(f"{'no' if not rows else 'more than one'} run matches {run_id!r}")
        execution = dict(rows[0])
        for key in ("argv", "parameters", "versions", "worker_environment"):
            execution[key] = json.loads(execution[key]) if execution[key] else None
        events = self._connection.execute(
            "SELECT artifact_id, kind, name FROM events WHERE execution_id = ?", (execution["id"],)
        ).fetchall()
        artifacts = {a["id"]: a for a in self._artifact_rows(e["artifact_id"] for e in events)}
        for kind in ("input", "output"):
            execution[f"{kind}s"] = [
                dict(artifacts[e["artifact_id"]], name=e["name"]) for e in events if e["kind"] == kind
            ]
        return execution

    def stale(self) -> list[dict]:
        """Recorded inputs whose content has changed (or vanished) since, and what depends on them."""
        rows = self._connection.execute(
            "SELECT DISTINCT a.* FROM artifacts a JOIN events e ON e.artifact_id = a.id AND e.kind = 'input'"
        ).fetchall()
        current: dict[str, str | None] = {}
        result = []
        for row in rows:
            uri = row["uri"]
            if uri not in current:
                try:
                    current[uri] = content_hash(uri)[0]
                except (OSError, FileNotFoundError):
                    current[uri] = None
            if current[uri] != row["content_hash"]:
                result.append(
                    {
                        "input": dict(row),
                        "now": current[uri] or "missing",
                        "dependents": self._walk([row["id"]], "downstream"),
                    }
                )
        return result

    def sources(self) -> list[dict]:
        return [
            dict(r, properties=json.loads(r["properties"]))
            for r in self._connection.execute("SELECT * FROM sources ORDER BY name")
        ]


def schema_hash(schema) -> str:
    """A stable hash of a tensorflow_metadata Schema."""
    return hashlib.sha256(schema.SerializeToString(deterministic=True)).hexdigest()
