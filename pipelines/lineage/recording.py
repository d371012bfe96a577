"""Recording one command's execution into the lineage store: its inputs and outputs with content
hashes, parameters, versions and outcome; OpenLineage events when an endpoint is configured."""

import os
import sqlite3
import sys
import uuid
from collections.abc import Callable

from pipelines.lineage import run_record
from pipelines.lineage.store import LineageStore, content_hash, git_commit, normalise_uri, now

__all__ = ["Recorder"]


class Recorder:
    """Records one command execution: call ``input``/``output`` as artifacts become known, then
    ``finish``. Lineage is bookkeeping: a store that cannot be written is reported, not fatal.

    Args:
        command: The command name (``run``, ``labels``, ``train``).
        parameters: The command's parameters.
        context: ``(type, name)``, e.g. ``("dataset", "taxi")``.
        runner: The Beam runner, if any.
        db_path: The store (see :func:`default_db_path`).
        worker_environment: What the workers run (``runtime/environment.py``); the runner's job ids
            are added to ``job_ids`` as pipelines finish.
    """

    def __init__(
        self,
        command: str,
        parameters: dict,
        context=None,
        runner: str | None = None,
        db_path=None,
        worker_environment: dict | None = None,
    ):
        self.id = uuid.uuid4().hex[:16]
        self.command = command
        self._artifacts: list[dict] = []
        self._db_path = db_path
        self._execution = {
            "id": self.id,
            "command": command,
            "argv": run_record.command_line(),
            "parameters": parameters,
            "started_at": now(),
            "versions": run_record.package_versions(),
            "git_commit": git_commit(),
            "runner": runner,
            "worker_environment": worker_environment,
        }
        self.job_ids: list[str] = []
        self._context = context
        self.warning: str | None = None
        self._store = self._open()
        if self._store:
            self._safely(lambda: self._store.start_execution(self._execution, context))
        self._openlineage = _OpenLineageEmitter.from_environment()
        if self._openlineage:
            self._openlineage.emit("START", self._execution, [], context)

    def _open(self) -> LineageStore | None:
        try:
            return LineageStore(self._db_path)
        except (sqlite3.Error, OSError) as error:
            self.warning = f"lineage not recorded: {error}"
            return None

    def _safely(self, action) -> None:
        try:
            action()
        except (sqlite3.Error, OSError) as error:
            self.warning = f"lineage not recorded: {error}"

    def _add(self, kind: str, uri: str, artifact_type: str, name=None, rows=None, schema_hash=None, sha256=None):
        uri = normalise_uri(uri)
        try:
            digest, size = (sha256, None) if sha256 else content_hash(uri)
        except (OSError, FileNotFoundError):
            return
        self._artifacts.append(
            {
                "kind": kind,
                "uri": uri,
                "type": artifact_type,
                "name": name,
                "content_hash": digest,
                "size": size,
                "rows": rows,
                "schema_hash": schema_hash,
            }
        )

    def input(self, uri: str, artifact_type: str, **kwargs) -> None:
        """Records an input artifact (hashed now, streaming, unless ``sha256=`` is given)."""
        self._add("input", uri, artifact_type, **kwargs)

    def output(self, uri: str, artifact_type: str, **kwargs) -> None:
        """Records an output artifact (a file or a directory tree, hashed now)."""
        self._add("output", uri, artifact_type, **kwargs)

    def outputs_under(self, directory: str, named_types: list[tuple[str, str]]) -> None:
        """Records ``directory/<name>`` as an output of each ``(name, artifact type)``."""
        for name, artifact_type in named_types:
            self.output(os.path.join(directory, name), artifact_type, name=name)

    def record_job(
        self, job: Callable[[], dict], input_type: str, output_dir: str, named_types: list[tuple[str, str]]
    ) -> dict:
        """Runs a job and records it: its report's ``inputs`` (``uri``, ``sha256``) as ``input_type``,
        ``output_dir/<name>`` for each ``(name, artifact type)``, and the outcome (failed with the
        error if the job raises, or with the report's ``failure`` if it has one).

        Returns:
            The job's report, with ``lineage_run_id`` added.
        """
        try:
            report = job()
        except BaseException as error:
            self.fail(error)
            raise
        for entry in report["inputs"]:
            self.input(entry["uri"], input_type, sha256=entry["sha256"], rows=None)
        self.outputs_under(output_dir, named_types)
        failure = report.get("failure")
        self.finish("failed" if failure else "succeeded", failure)
        report["lineage_run_id"] = self.id
        return report

    def fail(self, error: BaseException) -> None:
        """Closes the execution as ``failed`` with the error's type and (shortened) message."""
        self.finish("failed", f"{type(error).__name__}: {str(error).strip()[:300]}")

    def finish(self, status: str, reason: str | None = None) -> None:
        """Closes the execution as ``succeeded`` or ``failed``, with its artifacts and events."""
        if self._store:
            job_id = ",".join(self.job_ids) or None
            self._safely(lambda: self._store.finish_execution(self.id, status, reason, self._artifacts, job_id))
            self._store.close()
        if self._openlineage:
            self._openlineage.emit(
                "COMPLETE" if status == "succeeded" else "FAIL", self._execution, self._artifacts, self._context
            )


class _OpenLineageEmitter:
    """Emits OpenLineage run events through openlineage-python, when the user configured it."""

    def __init__(self, client):
        self._client = client

    @classmethod
    def from_environment(cls):
        configured = any(
            key in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG") or key.startswith("OPENLINEAGE__TRANSPORT")
            for key in os.environ
        )
        if not configured:
            return None
        from openlineage.client import OpenLineageClient

        return cls(OpenLineageClient())

    def emit(self, state: str, execution: dict, artifacts: list[dict], context) -> None:
        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import schema_dataset

        def dataset(artifact, kind):
            namespace, name = (
                ("file", artifact["uri"]) if "://" not in artifact["uri"] else artifact["uri"].split("://", 1)
            )
            facets = {}
            if artifact.get("schema_hash"):
                facets["schema"] = schema_dataset.SchemaDatasetFacet(
                    fields=[schema_dataset.SchemaDatasetFacetFields(name="schema_sha256", type=artifact["schema_hash"])]
                )
            cls = InputDataset if kind == "input" else OutputDataset
            return cls(namespace=namespace, name=name, facets=facets)

        job_name = f"skewless.{execution['command']}" + (f".{context[1]}" if context else "")
        event = RunEvent(
            eventType=getattr(RunState, state),
            eventTime=now(),
            run=Run(runId=str(uuid.UUID(execution["id"].ljust(32, "0")))),
            job=Job(namespace="skewless", name=job_name),
            producer="https://github.com/skewless/skewless",
            inputs=[dataset(a, "input") for a in artifacts if a["kind"] == "input"],
            outputs=[dataset(a, "output") for a in artifacts if a["kind"] == "output"],
        )
        try:
            self._client.emit(event)
        except Exception as error:  # noqa: BLE001 - an unreachable lineage endpoint never fails a job
            print(f"skewless: warning: OpenLineage event not sent: {str(error).splitlines()[0]}", file=sys.stderr)
