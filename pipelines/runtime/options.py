"""Beam pipeline options: the runner is chosen by flags alone, and never downloaded at run time."""

import os

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines.runtime import beam_patches

__all__ = ["LOCAL_RUNNER", "SkewlessPipelineOptions", "pipeline_options", "runner_name"]

# Beam 2.77's DirectRunner first tries to download the Prism runner binary; the FnApiRunner runs
# the same portable pipeline in-process (or in worker processes with
# --direct_running_mode=multi_processing) and needs nothing from the network.
LOCAL_RUNNER = "FnApiRunner"
_REPLACED_RUNNERS = {None, "DirectRunner", "SwitchingDirectRunner"}


class SkewlessPipelineOptions(PipelineOptions):
    """``PipelineOptions`` that make each view once.

    Beam 2.77 builds a view by parsing every flag again (an argparse parser of all its options), and
    its type checks ask for a view for every transform applied, thousands a run. A view holds no
    values of its own (every view reads and writes the one options dict), so
    the view made first serves every later request for the same class.
    """

    def view_as(self, cls):
        views = self.__dict__.setdefault("_skewless_views", {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self):
        state = dict(super().__getstate__())  # Beam returns the live __dict__: copy before dropping
        state.pop("_skewless_views", None)
        return state


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Builds PipelineOptions from pass-through flags, defaulting to the in-process runner.

    Args:
        beam_args: Beam flags such as ``--runner DataflowRunner --project p`` or
            ``--direct_running_mode=multi_processing --direct_num_workers=2``.

    Returns:
        The options; ``--runner`` unset or ``DirectRunner`` becomes ``FnApiRunner``.
    """
    options = SkewlessPipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in _REPLACED_RUNNERS:
        standard.runner = LOCAL_RUNNER
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode == "multi_processing":
        beam_patches.set_local_workers(direct.direct_num_workers or os.cpu_count() or 1)  # 0: one per core
    else:
        beam_patches.set_local_workers(0)  # no local worker processes
    return options


def runner_name(options: PipelineOptions) -> str:
    """The runner the options select."""
    runner = options.view_as(StandardOptions).runner
    return runner if isinstance(runner, str) else type(runner).__name__
