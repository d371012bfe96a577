"""A run's outputs in TFX's artifact layout, as TFX's Transform component writes them.

``skewless export-tfx DIR --to DEST`` lays out::

    DEST/transform_graph/                 transform_fn/, transformed_metadata/, metadata/
                                          (tft.TFTransformOutput(DEST/transform_graph) reads it)
    DEST/transformed_examples/Split-train/transformed_examples-00000-of-0000N.gz
    DEST/transformed_examples/Split-eval/...   gzip TFRecords of tf.Examples
    DEST/pre_transform_schema/schema.pbtxt     the raw schema
    DEST/pre_transform_stats/FeatureStats.pb   DatasetFeatureStatisticsList
    DEST/post_transform_schema/schema.pbtxt    the transformed schema
    DEST/post_transform_stats/FeatureStats.pb
    DEST/export_tfx.json                       the source run and the Importer properties

Files are hard-linked where source and destination are on one local file system (no copy, no
space), else copied through the file layer (``gs://`` included). The Importer properties a TFX
pipeline or Vertex AI needs to import ``transformed_examples`` as an ``Examples`` artifact are
returned and written to ``export_tfx.json``.
"""

import os

from pipelines.errors import UsageError
from pipelines.io import files
from pipelines.io import staging as outputs
from pipelines.lineage import run_record
from pipelines.prepare.split import SplitTrainEval

__all__ = ["RECORD", "export_tfx"]

RECORD = "export_tfx.json"
SPLITS = list(SplitTrainEval.SPLITS)
PROPERTIES = {
    "split_names": '["train", "eval"]',
    "file_format": "tfrecords_gzip",
    "payload_format": "FORMAT_TF_EXAMPLE",
}


def _place(source: str, destination: str) -> None:
    """A hard link where both are local on one file system; else a copy (:func:`files.copy`)."""
    if files.is_local(source) and files.is_local(destination):
        files.make_dirs(files.dirname(destination))
        try:
            os.link(source, destination)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    files.copy(source, destination)


def _place_tree(source: str, destination: str) -> None:
    for name in files.list_files(source):
        _place(files.join(source, name), files.join(destination, name))


def export_tfx(run_dir: str, destination: str) -> dict:
    """Lays out ``run_dir`` (a succeeded ``skewless run`` output) under ``destination``.

    Returns:
        ``{"source", "properties" (the Importer's), "splits": {split: files}, "artifacts": [names]}``.

    Raises:
        UsageError: Not a succeeded run, or its examples are Parquet (TFX reads tf.Examples).
    """
    record = run_record.require_transform_output(run_dir, "export-tfx")
    if record.get("parameters", {}).get("output_format", "tfrecord") != "tfrecord":
        raise UsageError(f"{run_dir} holds Parquet examples: TFX reads tf.Examples (run with --output-format tfrecord)")
    shards = {split: files.match(files.join(run_dir, "transformed", f"{split}-*.tfrecord.gz")) for split in SPLITS}
    for split, paths in shards.items():
        if not paths and record.get("counts", {}).get(f"rows_{split}"):
            raise UsageError(f"{run_dir} has no transformed/{split}-*.tfrecord.gz")
    with outputs.staged_directory(destination) as staging:
        graph = files.join(staging, "transform_graph")
        for name in ("transform_fn", "transformed_metadata", "metadata"):
            _place_tree(files.join(run_dir, name), files.join(graph, name))
        for split, paths in shards.items():
            for index, path in enumerate(paths):
                name = f"transformed_examples-{index:05d}-of-{len(paths):05d}.gz"
                _place(path, files.join(staging, "transformed_examples", f"Split-{split}", name))
        _place(
            files.join(run_dir, "metadata", "schema.pbtxt"), files.join(staging, "pre_transform_schema", "schema.pbtxt")
        )
        _place(
            files.join(run_dir, "transformed_metadata", "schema.pbtxt"),
            files.join(staging, "post_transform_schema", "schema.pbtxt"),
        )
        for stage in ("pre_transform", "post_transform"):
            stats = files.join(run_dir, "stats", stage, "FeatureStats.pb")
            if files.exists(stats):
                _place(stats, files.join(staging, f"{stage}_stats", "FeatureStats.pb"))
        result = {
            "source": files.absolute(run_dir),
            "properties": dict(PROPERTIES),
            "splits": {split: len(paths) for split, paths in shards.items()},
            "artifacts": sorted({name.split("/")[0] for name in files.list_files(staging)} - {outputs.TEMP}),
        }
        files.write_json(files.join(staging, RECORD), result)
    return result
