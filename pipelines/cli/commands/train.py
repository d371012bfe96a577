"""``skewless train``: train a baseline Keras model on a run's transformed examples."""

import argparse
import os
import sys

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "train"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "train",
        help="train a baseline Keras model on a run's transformed examples (classes or a number)",
        description="Trains a small Keras (tf_keras) model on DIR/transformed/train-*, evaluates on eval-*, and "
        "writes DIR/model/metrics.json and DIR/model/serving/, a SavedModel whose serving_default takes raw "
        "serialized tf.Examples. The label's kind decides the model: two classes (probabilities; accuracy, AUC, "
        "log loss), more (probabilities and classes; accuracy, log loss) or a float (predictions; RMSE, MAE).",
        epilog="example:\n  skewless train --transform-output out/demo --epochs 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transform-output", required=True, metavar="DIR", help="a `skewless run` output directory")
    parser.add_argument("--label", help="transformed feature to predict (default: the dataset config's label)")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training data (default: 5)")
    parser.add_argument("--lineage-db", metavar="FILE", help=arguments.LINEAGE_DB_HELP)


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import schemas
    from pipelines.errors import UsageError
    from pipelines.lineage import run_record

    record = run_record.require_transform_output(args.transform_output, "train")
    dataset = record["dataset"]
    if record.get("parameters", {}).get("output_format", "tfrecord") != "tfrecord":
        raise UsageError(
            f"{args.transform_output} was written with --output-format {record['parameters']['output_format']}: "
            "`skewless train` reads tf.Example TFRecords (rerun without --output-format)"
        )
    label = args.label or schemas.load_dataset(dataset).label
    if not label:
        raise UsageError("the dataset config names no label: pass --label")
    process.load_tensorflow()
    from pipelines.serving import train

    try:
        metrics = train.train(args.transform_output, label, args.epochs, dataset, args.lineage_db)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if metrics["kind"] == "regression":
        measures = f"eval RMSE {metrics['rmse']:.4f}, MAE {metrics['mae']:.4f}"
    else:
        measures = f"eval accuracy {metrics['accuracy']:.4f}"
        measures += f", AUC {metrics['auc']:.4f}" if "auc" in metrics else f" over {metrics['classes']} classes"
        measures += f", log loss {metrics['log_loss']:.4f}"
    print(
        f"skewless train: {metrics['kind']} label {metrics['label']}: {measures}\n"
        f"model in {os.path.join(args.transform_output, 'model')}/: metrics.json serving/",
        file=sys.stderr,
    )
    return 0
