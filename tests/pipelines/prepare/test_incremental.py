"""``skewless run --analysis-cache``: spans seen before are not analyzed again, and the result is the same."""

import json
import pathlib

import pytest

from pipelines import cli
from pipelines.prepare import incremental
from tests.helpers import sample_lines, transformed_rows

pytestmark = pytest.mark.e2e

ROWS_PER_SPAN = 1000


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spans")
    header, lines = sample_lines(3 * ROWS_PER_SPAN)
    spans = []
    for k in range(3):
        path = folder / f"span{k + 1}.csv"
        path.write_text("\n".join([header, *lines[k * ROWS_PER_SPAN : (k + 1) * ROWS_PER_SPAN]]) + "\n")
        spans.append(str(path))
    cache = str(folder / "cache")

    def run(name, inputs, *extra):
        out = folder / name
        argv = ["run", "--output", str(out), "--no-report", "--quiet", *extra]
        for path in inputs:
            argv += ["--input", path]
        assert cli.main(argv) == 0
        return out

    return {
        "spans": spans,
        "cold": run("cold", spans[:2], "--analysis-cache", cache),
        "warm": run("warm", spans[1:], "--analysis-cache", cache),
        "again": run("again", spans[1:], "--analysis-cache", cache),
        "other_split": run("other_split", spans[1:], "--analysis-cache", cache, "--eval-fraction", "0.5"),
        "plain": run("plain", spans[1:]),
        "cache": cache,
    }


def test_only_the_new_span_is_analyzed(runs):
    cold = json.loads((runs["cold"] / "run.json").read_text())["analysis"]
    warm = json.loads((runs["warm"] / "run.json").read_text())["analysis"]
    assert (cold["analyzed"], cold["reused"]) == (runs["spans"][:2], [])
    assert (warm["analyzed"], warm["reused"]) == (runs["spans"][2:], runs["spans"][1:2])
    assert cold["damaged"] == warm["damaged"] == []
    again = json.loads((runs["again"] / "run.json").read_text())["analysis"]
    assert (again["analyzed"], again["reused"]) == ([], runs["spans"][1:])
    other = json.loads((runs["other_split"] / "run.json").read_text())["analysis"]
    assert (other["analyzed"], other["reused"]) == (runs["spans"][1:], [])  # other train rows: analyzed afresh


def test_the_span_hashes_are_the_run_records_input_hashes(runs, tmp_path, monkeypatch):
    """The analysis names the spans by their hashes; run.json's inputs take those hashes rather than
    reading the files again. The command line starts hashing them while TensorFlow loads: each file
    is hashed once."""
    import hashlib

    from pipelines.lineage import run_record

    record = json.loads((runs["warm"] / "run.json").read_text())
    assert "sha256" not in record["analysis"]
    expected = [(path, hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()) for path in runs["spans"][1:]]
    assert [(i["uri"], i["sha256"]) for i in record["inputs"]] == expected

    hashed = []
    files_sha256 = run_record.files_sha256

    def counted(paths, *args, **kwargs):
        hashed.extend(paths)
        return files_sha256(paths, *args, **kwargs)

    monkeypatch.setattr(run_record, "files_sha256", counted)
    argv = ["run", "--output", str(tmp_path / "out"), "--no-report", "--quiet", "--analysis-cache", runs["cache"]]
    assert cli.main([*argv, "--input", runs["spans"][1], "--input", runs["spans"][2]]) == 0
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [(i["uri"], i["sha256"]) for i in record["inputs"]] == expected
    assert sorted(hashed) == sorted(runs["spans"][1:])  # once each


def test_each_span_caches_one_entry_per_analyzer(runs):
    """The taxi preprocessing_fn has four analyzers (z-scores, two vocabularies, quantiles), so each
    span's cache holds four entries beside its metadata."""
    spans = sorted(pathlib.Path(runs["cache"]).iterdir())
    assert len(spans) == 5  # three files, two of them also with --eval-fraction 0.5
    for span in spans:
        assert sorted(path.name for path in span.iterdir()) == [
            *(f"{index}-00000-of-00001.gz" for index in range(4)),
            "MANIFEST",
            "METADATA-00000-of-00001",
        ]


@pytest.mark.parametrize("name", ["warm", "again"])
def test_the_cached_analysis_equals_a_fresh_one(runs, name):
    warm, plain = runs[name], runs["plain"]
    for vocabulary in ("payment_type", "company"):
        path = f"transform_fn/assets/{vocabulary}"
        assert (warm / path).read_bytes() == (plain / path).read_bytes()
    cached = {r["row_id"]: r for r in transformed_rows(warm, "train") + transformed_rows(warm, "eval")}
    fresh = {r["row_id"]: r for r in transformed_rows(plain, "train") + transformed_rows(plain, "eval")}
    assert cached.keys() == fresh.keys() and len(cached) == 2 * ROWS_PER_SPAN  # these sample rows are distinct
    for key, row in cached.items():
        for feature, values in row.items():
            assert values == pytest.approx(fresh[key][feature], abs=1e-5), feature
    record = json.loads((warm / "run.json").read_text())
    assert record["parity"]["passed"] and record["counts"]["rows_read"] == 2 * ROWS_PER_SPAN


def test_a_span_is_keyed_by_its_content(tmp_path):
    one, two, same = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    one.write_text("x\n1\n")
    two.write_text("x\n2\n")
    same.write_text("x\n1\n")
    keys = incremental.span_keys([(str(p), 4) for p in (one, two, same)])
    assert keys[str(one)] == keys[str(same)] != keys[str(two)]


def test_a_span_is_keyed_by_how_its_rows_are_read_and_split_too(tmp_path):
    """Cached accumulators are those of the span's valid train rows: another eval fraction, schema,
    split key, delimiter or record cutting must not reuse them."""
    path = tmp_path / "a.csv"
    path.write_text("x\n1\n")
    files = [(str(path), 4)]
    reading = {"schema": "feature { name: 'x' }", "split_key": [], "eval_fraction": 0.2, "quoted_newlines": False}
    key = incremental.span_keys(files, reading)[str(path)]
    assert key == incremental.span_keys(files, dict(reading))[str(path)]  # the same reading: the same span
    for change in ({"eval_fraction": 0.3}, {"schema": ""}, {"split_key": ["x"]}, {"quoted_newlines": True}):
        assert incremental.span_keys(files, {**reading, **change})[str(path)] != key, change
    assert incremental.span_keys(files, reading, csv_delimiter=";")[str(path)] != key


def test_a_bad_row_in_a_one_pass_run_is_dead_lettered_and_counted(tmp_path):
    """With --analysis-cache the main pipeline makes one pass; a bad row still goes to the dead
    letters with its reason, and every row is accounted for."""
    header, lines = sample_lines(200)
    path = tmp_path / "span.csv"
    path.write_text("\n".join([header, *lines[:100], "1,2,3", *lines[100:]]) + "\n")
    out = tmp_path / "out"
    argv = ["run", "--input", str(path), "--output", str(out), "--no-report", "--quiet"]
    assert cli.main([*argv, "--analysis-cache", str(tmp_path / "cache")]) == 0
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["rows_read"] == 201 and counts["rows_dead_lettered"] == 1
    assert counts["rows_train"] + counts["rows_eval"] == 200
    assert counts["dead_letter_reasons"] == {"wrong field count": 1}
    dead = [json.loads(line) for file in (out / "dead_letter").iterdir() for line in file.read_text().splitlines()]
    assert [(record["raw"], record["reason"]) for record in dead] == [
        ("1,2,3", "wrong field count: expected 18, found 3")
    ]


def _cache_spans(cache: str) -> list:
    from tensorflow_transform.beam import analyzer_cache

    return [analyzer_cache.DatasetKey(path.name) for path in sorted(pathlib.Path(cache).iterdir())]


def _manifest(cache: str, key) -> dict:
    import pickle

    return pickle.loads((pathlib.Path(cache) / key.key / "MANIFEST").read_bytes())


def test_the_cache_is_read_in_one_stage_with_the_values_tf_reads(runs):
    """Every cached entry and span metadata, read by ``ReadAnalysisCache`` in one DoFn, equals what
    TensorFlow's own TFRecord reader finds in the files, and what tf.Transform's cache reader reads."""
    import tensorflow as tf
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to
    from tensorflow_transform.beam import analyzer_cache

    def tf_records(pattern):
        return [
            r.numpy()
            for path in sorted(tf.io.gfile.glob(pattern))
            for r in tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
        ]

    cache, spans = runs["cache"], _cache_spans(runs["cache"])
    needed = sorted(_manifest(cache, spans[0]))
    assert len(needed) == 4
    reader = incremental.ReadAnalysisCache(cache, spans, needed)
    assert reader.damaged == []
    with TestPipeline() as pipeline:
        read = pipeline | reader
        theirs = pipeline | "TheirReader" >> analyzer_cache.ReadAnalysisCacheFromFS(cache, spans)
        assert sorted(read) == spans
        for span in spans:
            folder = pathlib.Path(cache) / span.key
            manifest = _manifest(cache, span)
            assert sorted(read[span].cache_dict) == needed
            for entry, cached in read[span].cache_dict.items():
                expected = tf_records(str(folder / f"{manifest[entry]}-*-of-*"))
                assert expected
                assert_that(cached, equal_to(expected), label=f"{span.key}/{manifest[entry]}")
                # the cache is written by WriteAnalysisCache: tf.Transform's reader reads it too
                assert_that(theirs[span].cache_dict[entry], equal_to(expected), label=f"{span.key}/{entry}/tft")
            metadata = [analyzer_cache.DatasetCacheMetadata.decode(r) for r in tf_records(str(folder / "METADATA-*"))]
            assert len(metadata) == 1 and metadata[0].dataset_size > 0
            assert_that(read[span].metadata, equal_to(metadata), label=f"{span.key}/metadata")


def test_a_damaged_or_incomplete_span_cache_is_not_reused(runs, tmp_path):
    import gzip
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(runs["cache"], cache)
    spans = _cache_spans(str(cache))
    needed = sorted(_manifest(str(cache), spans[0]))
    cut, no_metadata, other_fn, sound, cut_between_records = spans[:5]
    entry = cache / cut.key / f"{_manifest(str(cache), cut)[needed[0]]}-00000-of-00001.gz"
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    (cache / no_metadata.key / "METADATA-00000-of-00001").unlink()
    # cut after its last whole record (here: before its first), where only gzip's own end is missing
    entry = (
        cache / cut_between_records.key / f"{_manifest(str(cache), cut_between_records)[needed[1]]}-00000-of-00001.gz"
    )
    entry.write_bytes(gzip.compress(b"")[:-8])
    reader = incremental.ReadAnalysisCache(str(cache), spans, needed)
    assert reader.damaged == [cut, no_metadata, cut_between_records]
    # a cache made for another preprocessing_fn lacks an entry: not damaged, just not this fn's cache
    assert incremental.ReadAnalysisCache(str(cache), [other_fn, sound], [*needed, b"another"]).damaged == []


def test_a_run_analyzes_damaged_spans_afresh_and_caches_them_again(runs, tmp_path, capsys):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(runs["cache"], cache)
    for entry in cache.glob("*/3-*.gz"):
        entry.write_bytes(entry.read_bytes()[:-20])  # every span's last entry cut short
    argv = ["run", "--no-report", "--analysis-cache", str(cache)]
    for path in runs["spans"][1:]:
        argv += ["--input", path]
    capsys.readouterr()
    assert cli.main([*argv, "--output", str(tmp_path / "first")]) == 0
    first = json.loads((tmp_path / "first" / "run.json").read_text())["analysis"]
    assert (first["analyzed"], first["reused"], first["damaged"]) == (runs["spans"][1:], [], runs["spans"][1:])
    summary = capsys.readouterr().err  # the run's summary says so too
    assert "analysis cache: 0 span(s) reused, 2 analyzed, 2 of them because their cache was damaged" in summary
    assert cli.main([*argv, "--output", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "run.json").read_text())["analysis"]
    assert (again["analyzed"], again["reused"], again["damaged"]) == ([], runs["spans"][1:], [])
    assert "analysis cache: 2 span(s) reused, 0 analyzed (" in capsys.readouterr().err
    for run in ("first", "again"):
        for vocabulary in ("payment_type", "company"):
            path = f"transform_fn/assets/{vocabulary}"
            assert (tmp_path / run / path).read_bytes() == (runs["plain"] / path).read_bytes()


def test_the_cache_entries_needed_are_the_same_for_every_span():
    """``analyze_with_cache`` lists the entries the preprocessing_fn needs with one stand-in span
    key (while the real keys' files are hashed); that holds only if they do not depend on the key."""
    from tensorflow_transform.beam import analysis_graph_builder, analyzer_cache
    from tfx_bsl.tfxio import tensor_adapter

    import schemas
    from pipelines.prepare import transforms

    dataset = schemas.load_dataset("taxi")
    specs = tensor_adapter.TensorAdapter(transforms.tensor_adapter_config(dataset.schema)).OriginalTypeSpecs()

    def needed(keys):
        return analysis_graph_builder.get_analysis_cache_entry_keys(
            dataset.preprocessing_fn(), specs, [analyzer_cache.DatasetKey(k) for k in keys], dataset.tf_compat_v1
        )

    one = needed(["span"])
    assert len(one) == 4 and needed(["span_a", "span_b", "span_c"]) == one


def test_a_span_cache_cut_short_by_a_failure_has_no_manifest_naming_a_missing_file(runs, tmp_path, monkeypatch):
    """Each span's manifest is written last: a write that fails midway leaves a new span without a
    manifest, and a span cached before with its old manifest (so it is reused as it was)."""
    import shutil

    from apache_beam.io.filesystems import FileSystems

    cache = tmp_path / "cache"
    shutil.copytree(runs["cache"], cache)
    old = _cache_spans(str(cache))[0]
    before = _manifest(str(cache), old)
    entries = sorted(before)
    values = [(entry, b"accumulator") for entry in entries]
    created = []
    create = FileSystems.create

    def fail_on_the_second_file(path, *args, **kwargs):
        created.append(path)
        if len(created) == 2:
            raise OSError("disk full")
        return create(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "create", fail_on_the_second_file)
    writer = incremental._WriteSpanCache(str(cache), {"span_new": entries, old.key: entries})
    for span in ("span_new", old.key):
        created.clear()
        with pytest.raises(OSError, match="disk full"):
            list(writer.process((span, values)))
    assert sorted(p.name for p in (cache / "span_new").iterdir()) == ["0-00000-of-00001.gz"]
    assert _manifest(str(cache), old) == before
    monkeypatch.setattr(FileSystems, "create", create)
    assert list(writer.process(("span_new", values))) == ["span_new"]
    assert _manifest(str(cache), incremental.analyzer_cache.DatasetKey("span_new")) == {
        entry: index for index, entry in enumerate(entries)
    }
