"""``skewless serve``: serve a model over the TensorFlow Serving REST API."""

import argparse
import os
import sys

from pipelines.runtime import process

NAME = "serve"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "serve",
        help="serve a model over the TensorFlow Serving REST API",
        description="Answers GET /v1/models/NAME (status) and POST /v1/models/NAME:predict with "
        '{"instances": [raw feature dicts]}, like TensorFlow Serving; malformed requests get a 400.',
        epilog="examples:\n  skewless serve --model out/demo/model/serving --port 8501\n"
        '  curl -d \'{"instances": [{"trip_miles": 1.2, ...}]}\' localhost:8501/v1/models/default:predict',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="serving_model/ or model/serving/ directory")
    parser.add_argument("--port", type=int, default=8501, help="port (default: 8501; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--model-name", default="default", help="the NAME in /v1/models/NAME (default: default)")


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.errors import Interrupted, UsageError

    if not os.path.isfile(os.path.join(args.model, "saved_model.pb")):
        raise UsageError(f"{args.model} is not a SavedModel directory")
    process.load_tensorflow()
    from pipelines.serving import model as serving

    model = serving.ServingModel(args.model)
    try:
        server = serving.make_server(model, args.host, args.port, args.model_name)
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    host, port = server.server_address[:2]
    print(
        f"skewless serve: {args.model} as '{args.model_name}' on http://{host}:{port}/v1/models/{args.model_name}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except (KeyboardInterrupt, Interrupted):  # Ctrl-C or SIGTERM: a normal stop
        pass
    finally:
        server.server_close()
    return 0
