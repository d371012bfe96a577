"""Beam pipeline options: the runner is chosen by flags alone, and never downloaded at run time."""

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

__all__ = ["LOCAL_RUNNER", "pipeline_options", "runner_name"]

# Beam 2.77's DirectRunner first tries to download the Prism runner binary; the FnApiRunner runs
# the same portable pipeline in-process (or in worker processes with
# --direct_running_mode=multi_processing) and needs nothing from the network.
LOCAL_RUNNER = "FnApiRunner"
_REPLACED_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner"}


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Builds PipelineOptions from pass-through flags, defaulting to the in-process runner.

    Args:
        beam_args: Beam flags such as ``--runner DataflowRunner --project p`` or
            ``--direct_running_mode=multi_processing --direct_num_workers=2``.

    Returns:
        The options; ``--runner`` unset or ``DirectRunner`` becomes ``FnApiRunner``.
    """
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in _REPLACED_RUNNERS:
        standard.runner = LOCAL_RUNNER
    return options


def runner_name(options: PipelineOptions) -> str:
    """The runner the options select."""
    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__
