"""``GroupByKeyOnDisk``: Beam's GroupByKey with its state in partition files; ``KeepOnDisk``."""

import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.io import shuffle

pytestmark = pytest.mark.pipeline


def _sorted_groups(element):
    key, values = element
    return key, sorted(values)


def test_it_groups_as_group_by_key_does_and_leaves_no_file(tmp_path):
    rng = random.Random(7)
    keys = [f"k{i}" for i in range(300)] + [(rule, f"block{i}") for rule in range(3) for i in range(100)]
    pairs = [(rng.choice(keys), (i, "x" * rng.randrange(5))) for i in range(5000)]
    expected = {}
    for key, value in pairs:
        expected.setdefault(key, []).append(value)
    temp = tmp_path / "groups"
    with TestPipeline() as pipeline:
        created = pipeline | beam.Create(pairs)
        on_disk = (
            created
            | "OnDisk" >> shuffle.GroupByKeyOnDisk(str(temp), partitions=7)
            | "SortDisk" >> beam.Map(_sorted_groups)
        )
        in_memory = created | "InMemory" >> beam.GroupByKey() | "SortMemory" >> beam.Map(_sorted_groups)
        assert_that(on_disk, equal_to([(k, sorted(v)) for k, v in expected.items()]), label="OnDisk")
        assert_that(in_memory, equal_to([(k, sorted(v)) for k, v in expected.items()]), label="InMemory")
    assert len(expected) > 500 and sum(map(len, expected.values())) == 5000
    assert list(temp.iterdir()) == []  # every partition file deleted once grouped


def test_nothing_in_nothing_out(tmp_path):
    with TestPipeline() as pipeline:
        grouped = pipeline | beam.Create([]) | shuffle.GroupByKeyOnDisk(str(tmp_path / "groups"))
        assert_that(grouped, equal_to([]))


def test_equal_keys_have_one_partition_in_every_process():
    """Workers partition apart: a key's partition must not depend on how the key was made or on the
    process (a string's ``hash`` is salted per process)."""
    import os
    import pickle
    import subprocess
    import sys

    keys = ["block", (1, "ab"), (0, "x\x1fy")]
    here = [shuffle.partition_of(key, 64) for key in keys]
    assert here == [shuffle.partition_of(pickle.loads(pickle.dumps(key)), 64) for key in keys]
    assert shuffle.partition_of("".join(["blo", "ck"]), 64) == here[0]
    code = f"from pipelines.io import shuffle; print([shuffle.partition_of(k, 64) for k in {keys!r}])"
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert printed.stdout.strip() == str(here)


def test_a_runner_with_its_own_shuffle_gets_beams_group_by_key(tmp_path):
    assert isinstance(shuffle.group_by_key(None), beam.GroupByKey)
    assert isinstance(shuffle.group_by_key(str(tmp_path)), shuffle.GroupByKeyOnDisk)


def test_a_collection_kept_on_disk_is_read_back_whole_by_a_stage_waiting_for_a_side_input(tmp_path):
    """``KeepOnDisk`` writes the elements to files (several here: 2 KB each) and the stage that
    reads them, which waits for a side input as dedup's policy does, gets every one back."""
    rng = random.Random(3)
    records = [{"id": f"r{i}", "name": "x" * rng.randrange(40), "n": i} for i in range(2000)]
    temp = tmp_path / "kept"
    with TestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=FnApiRunner"])) as pipeline:
        created = pipeline | beam.Create(records)
        total = created | "Count" >> beam.combiners.Count.Globally()
        kept = created | shuffle.KeepOnDisk(str(temp), file_bytes=2048)
        read = kept | "AfterCount" >> beam.Map(lambda r, n: (r["id"], r["n"], n), beam.pvalue.AsSingleton(total))
        assert_that(read, equal_to([(r["id"], r["n"], 2000) for r in records]))
    assert len(list(temp.iterdir())) > 20  # files of about 2 KB, left for the run's temp dir to remove


def test_a_runner_that_holds_nothing_in_memory_gets_the_collection_as_it_is(tmp_path):
    assert not isinstance(shuffle.keep_on_disk(None), shuffle.KeepOnDisk)
    assert isinstance(shuffle.keep_on_disk(str(tmp_path)), shuffle.KeepOnDisk)
