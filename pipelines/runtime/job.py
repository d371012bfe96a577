"""The scaffold every job that writes an output directory runs in: ``run``, ``labels`` (every kind),
``dedup``.

A job is staged (its output complete or absent, ``io/staging.py``), says what it is doing
(progress lines), times its stages, runs its Beam pipelines and collects their counters, writes
its record (``run.json``, ``agreement.json``, ``dedup.json``) into the staged directory, publishes
it, records lineage (inputs, the outputs published, the outcome; failed on any exception, the
command line's SIGTERM and SIGINT included), and ends with one line (``CheckFailed``) when its
record holds a failure: what the job kept for that case (its dead letters, the record) is then
published, the rest was removed by the job.
"""

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.errors import CheckFailed
from pipelines.io import files
from pipelines.io import staging as outputs
from pipelines.lineage import recording, run_record
from pipelines.runtime import environment
from pipelines.runtime.options import pipeline_options, runner_name

__all__ = ["FAILURE", "Job", "JobSpec", "LineageOutput", "silent"]

FAILURE = "failure"  # the record's key for a failed check: the job publishes, then fails with it


def silent(stage: str) -> None:
    """A progress callback that prints nothing."""
    del stage


@dataclasses.dataclass(frozen=True)
class LineageOutput:
    """An output the job publishes, as lineage records it: ``name`` under the output directory.

    An output absent from the published directory (removed after a failed check) is not recorded.
    """

    name: str
    artifact_type: str
    rows: int | None = None


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What a job is, for its staging and its lineage.

    Attributes:
        command: The command's name (``run``, ``labels``, ``dedup``).
        output: The output directory.
        parameters: The job's parameters, as lineage records them.
        context: ``(type, name)`` of the lineage context, e.g. ``("dataset", "taxi")``.
        record_file: The record's file name under the output (``run.json``, ...).
        lineage_db: The lineage store (None: the default).
        record_lineage: False when a calling job records these outputs as its own.
    """

    command: str
    output: str
    parameters: dict
    context: tuple[str, str]
    record_file: str
    lineage_db: str | None = None
    record_lineage: bool = True


class Job:
    """One execution of a job: its pipeline options, progress, timings, staging, record and lineage.

    Args:
        spec: What the job is.
        beam_args: Pass-through Beam flags (ignored when ``options`` are given).
        progress: Called with each stage's name as it starts.
        options: The pipeline options, when the caller built them already.
        started: When the job started (default: now).
    """

    def __init__(
        self,
        spec: JobSpec,
        beam_args: Sequence[str] = (),
        progress: Callable[[str], None] | None = None,
        options: PipelineOptions | None = None,
        started: float | None = None,
    ):
        self.spec = spec
        self.started = time.time() if started is None else started
        self.options = options if options is not None else pipeline_options(list(beam_args))
        self.runner = runner_name(self.options)
        self.worker_environment = environment.worker_environment(self.options)
        self.job_ids: list[str] = []  # the runner's ids of the pipelines run, when it gives them
        self.progress = progress or silent
        self.timings: dict[str, float] = {}
        self.recorder = (
            recording.Recorder(
                spec.command,
                spec.parameters,
                spec.context,
                self.runner,
                spec.lineage_db,
                worker_environment=self.worker_environment,
            )
            if spec.record_lineage
            else None
        )

    def workers(self) -> dict:
        """Where the job's pipelines ran: ``{"runner", "job_ids", "environment"}`` (for ``run.json``)."""
        return {"runner": self.runner, "job_ids": list(self.job_ids), "environment": self.worker_environment}

    def seconds(self) -> float:
        """Seconds since the job started, rounded to milliseconds."""
        return round(time.time() - self.started, 3)

    @contextlib.contextmanager
    def stage(self, timing: str | None, progress: str | None = None) -> Iterator[None]:
        """Says ``progress`` (when given) and adds the block's seconds to ``timings[timing]``."""
        if progress:
            self.progress(progress)
        began = time.time()
        try:
            yield
        finally:
            if timing:
                self.timings[timing] = self.timings.get(timing, 0.0) + time.time() - began

    def run_pipeline(
        self, build: Callable[[beam.Pipeline], None], progress: str, timing: str | None = "pipeline"
    ) -> dict[tuple[str, str], int]:
        """Builds a pipeline with the job's options, runs it to the end and returns its counters.

        Args:
            build: Adds the transforms to the pipeline.
            progress: The progress line.
            timing: Where its seconds are added in ``timings``.

        Returns:
            ``{(namespace, name): value}`` of every counter the pipeline kept.
        """
        with self.stage(timing, progress):
            pipeline = beam.Pipeline(options=self.options)
            build(pipeline)
            result = pipeline.run()
            job_id = environment.job_id_of(result)
            if job_id:
                self.job_ids.append(job_id)
                if self.recorder is not None:
                    self.recorder.job_ids.append(job_id)
            result.wait_until_finish()
        return run_record.collect_counters(result)

    def execute(
        self,
        body: Callable[[str], dict],
        lineage_inputs: Callable[[dict], list[tuple[str, str, dict]]],
        lineage_outputs: Callable[[dict], list[LineageOutput]],
        after_record: Callable[[str], None] | None = None,
        failure_of: Callable[[dict], str | None] = lambda record: record.get(FAILURE),
    ) -> dict:
        """Runs ``body(staging)`` in a staged output directory and does the rest of the scaffold.

        Args:
            body: Writes the outputs under the staging directory it is given and returns the
                record; ``record["failure"]`` names a failed check (the body removes what must not
                be published then).
            lineage_inputs: The record's inputs as ``(uri, artifact type, Recorder.input keywords)``.
            lineage_outputs: The outputs under ``spec.output`` that lineage records.
            after_record: Called with the staging directory once the record is written (the report).
            failure_of: The failed check a record names, or None (default: its ``failure``).

        Returns:
            The record.

        Raises:
            CheckFailed: The record holds a failure (published first).
        """
        try:
            with outputs.staged_directory(self.spec.output) as staging:
                record = body(staging)
                files.write_json(files.join(staging, self.spec.record_file), record)
                if after_record is not None:
                    after_record(staging)
        except BaseException as error:
            if self.recorder is not None:
                self.recorder.fail(error)
            raise
        failure = failure_of(record)
        if self.recorder is not None:
            self.progress("recording lineage")
            for uri, artifact_type, details in lineage_inputs(record):
                self.recorder.input(uri, artifact_type, **details)
            for output in lineage_outputs(record):
                path = files.join(self.spec.output, output.name)
                self.recorder.output(path, output.artifact_type, name=output.name, rows=output.rows)
            self.recorder.finish("failed" if failure else "succeeded", failure)
            if self.recorder.warning:
                print(f"skewless {self.spec.command}: warning: {self.recorder.warning}", file=sys.stderr)
        if failure:
            raise CheckFailed(failure)
        return record
