"""Where a job's workers ran, for ``run.json`` and the lineage store: the runner's job id and the
worker environment (container image, or the requirements and packages the workers installed).

What runs on the driver (planning, export, parity, report, lineage) is this process; what runs on
the workers is decided by the pipeline options. Recording both lets a result be traced to the code
that produced it on either side.
"""

import hashlib

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, SetupOptions, WorkerOptions

from pipelines.io import files
from pipelines.runtime.options import LOCAL_RUNNER, runner_name

__all__ = ["IN_PROCESS", "job_id_of", "worker_environment"]

IN_PROCESS = "in-process"
_IN_PROCESS_RUNNERS = {LOCAL_RUNNER, "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


def job_id_of(result) -> str | None:
    """The runner's id of a finished pipeline (Dataflow's job id, a portable job service's), or None
    for a runner that gives none (the in-process one)."""
    job_id = getattr(result, "job_id", None)
    if callable(job_id):
        try:
            job_id = job_id()
        except Exception:  # noqa: BLE001 - a result without a job: no id
            return None
    if job_id is None:
        job_id = getattr(result, "_job_id", None)
    return str(job_id) if job_id else None


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(files.read_bytes(path)).hexdigest()
    except Exception:  # noqa: BLE001 - an unreadable file is recorded without its hash
        return None


def worker_environment(options: PipelineOptions) -> dict:
    """What the workers run: ``{"kind": "in-process" | "container" | "process" | "external" |
    "docker" | "default", ...}`` with the image, the environment's address, and the requirements,
    setup file and extra packages handed to the workers (each with its SHA-256 where readable)."""
    runner = runner_name(options)
    portable = options.view_as(PortableOptions)
    image = options.view_as(WorkerOptions).sdk_container_image
    setup = options.view_as(SetupOptions)
    if runner in _IN_PROCESS_RUNNERS and not portable.environment_type:
        environment = {"kind": IN_PROCESS}
    elif image:
        environment = {"kind": "container", "image": image}
    elif portable.environment_type:
        environment = {"kind": portable.environment_type.lower(), "config": portable.environment_config}
    else:
        environment = {"kind": "default"}
    if setup.requirements_file:
        environment["requirements_file"] = setup.requirements_file
        environment["requirements_sha256"] = _sha256(setup.requirements_file)
    if setup.setup_file:
        environment["setup_file"] = setup.setup_file
    if setup.extra_packages:
        environment["extra_packages"] = {path: _sha256(path) for path in setup.extra_packages}
    return environment
