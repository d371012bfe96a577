"""Pipeline options: the local runner by default, and views made once."""

import pickle

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TypeOptions

from pipelines.runtime.options import LOCAL_RUNNER, SkewlessPipelineOptions, pipeline_options, runner_name

pytestmark = pytest.mark.unit


def test_no_runner_or_the_direct_runner_becomes_the_in_process_runner():
    assert runner_name(pipeline_options([])) == LOCAL_RUNNER
    assert runner_name(pipeline_options(["--runner", "DirectRunner"])) == LOCAL_RUNNER
    assert runner_name(pipeline_options(["--runner=DataflowRunner"])) == "DataflowRunner"


def test_a_view_is_made_once_and_shares_the_values_of_every_view():
    options = pipeline_options(["--direct_num_workers=2", "--no_pipeline_type_check"])
    assert isinstance(options, SkewlessPipelineOptions)
    assert options.view_as(TypeOptions) is options.view_as(TypeOptions)
    assert options.view_as(TypeOptions).pipeline_type_check is False
    options.view_as(DirectOptions).direct_num_workers = 3
    assert options.view_as(DirectOptions).direct_num_workers == 3
    assert PipelineOptions.view_as(options, DirectOptions).direct_num_workers == 3  # an uncached view
    assert options.get_all_options()["direct_num_workers"] == 3


def test_pickled_options_keep_their_values_and_no_views():
    options = pipeline_options(["--direct_num_workers=2"])
    options.view_as(StandardOptions)
    copy = pickle.loads(pickle.dumps(options))
    assert "_skewless_views" not in copy.__dict__ and "_skewless_views" in options.__dict__
    assert copy.view_as(DirectOptions).direct_num_workers == 2
    assert runner_name(copy) == LOCAL_RUNNER
