"""``skewless serve``: serve a model over TensorFlow Serving's REST and gRPC APIs."""

import argparse
import sys

from pipelines.runtime import process

NAME = "serve"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    from pipelines.serving.options import ServerOptions

    defaults = ServerOptions()
    parser = commands.add_parser(
        "serve",
        help="serve a model over TensorFlow Serving's REST and gRPC APIs",
        description="Answers GET /v1/models/NAME (status), GET /v1/models/NAME/metadata and "
        'POST /v1/models/NAME:predict with {"instances": [raw feature dicts]} (or columns: {"inputs": '
        "{feature: [values]}}), like TensorFlow Serving, "
        "and with --grpc-port its gRPC PredictionService (Predict, Classify, Regress, GetModelMetadata). "
        "Concurrent requests are batched into one graph call. Bad requests get a 400 (INVALID_ARGUMENT) "
        "naming the instance and feature, a full queue a 503, a late answer a 504, a body over the limit "
        "a 413. SIGTERM answers the requests in flight, then exits. Counters: GET /monitoring/prometheus/metrics.",
        epilog="examples:\n  skewless serve --model out/demo/model/serving --port 8501 --grpc-port 8500\n"
        '  curl -d \'{"instances": [{"trip_miles": 1.2, ...}]}\' localhost:8501/v1/models/default:predict',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="serving_model/ or model/serving/ directory")
    parser.add_argument("--port", type=int, default=defaults.port, help="REST port (default: 8501; 0 picks a free one)")
    parser.add_argument(
        "--grpc-port", type=int, default=None, metavar="N", help="also serve gRPC on this port (0 picks a free one)"
    )
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--model-name", default=defaults.model_name, help="the NAME in /v1/models/NAME (default: default)"
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=defaults.max_batch_size,
        metavar="N",
        help=f"most examples in one graph call (default: {defaults.max_batch_size})",
    )
    parser.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=defaults.batch_timeout_ms,
        metavar="MS",
        help=(
            f"how long a batch waits for more requests while another graph call runs "
            f"(default: {defaults.batch_timeout_ms:g}; an idle server answers at once)"
        ),
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        metavar="N",
        help=f"threads making graph calls (default: {defaults.workers})",
    )
    parser.add_argument(
        "--max-queued",
        type=int,
        default=defaults.max_queued,
        metavar="N",
        help=f"requests waiting for the graph at most; more get a 503 (default: {defaults.max_queued})",
    )
    parser.add_argument(
        "--request-timeout-ms",
        type=float,
        default=defaults.request_timeout_ms,
        metavar="MS",
        help=f"a request not answered by then gets a 504 (default: {defaults.request_timeout_ms:g})",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=defaults.processes,
        metavar="N",
        help="server processes sharing the ports, each with its own copy of the model (default: 1)",
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a --processes child
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=defaults.max_request_bytes,
        metavar="N",
        help=f"a larger request body gets a 413 (default: {defaults.max_request_bytes})",
    )


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.errors import UsageError
    from pipelines.io import files

    if not files.exists(files.join(args.model, "saved_model.pb")):
        raise UsageError(f"{args.model} is not a SavedModel directory")
    for flag in ("max_batch_size", "workers", "max_queued", "max_request_bytes", "processes"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    process.load_tensorflow()
    from pipelines.serving.model import ServingModel
    from pipelines.serving.options import ServerOptions
    from pipelines.serving.server import Server

    options = ServerOptions(**_options_of(args), reuse_port=args.reuse_port or args.processes > 1)
    server = Server(ServingModel(args.model), options)
    others = None
    if args.processes > 1:
        from pipelines.serving.processes import ServerProcesses

        others = ServerProcesses(_child_argv(args), args.processes - 1)

    def ready(server: Server) -> None:
        if others is not None:
            others.start(server.rest_port, server.grpc_port)  # on the ports this one listens on
        name = args.model_name
        grpc = f" and grpc://{args.host}:{server.grpc_port}" if server.grpc_port is not None else ""
        print(
            f"skewless serve: {args.model} as '{name}' on http://{args.host}:{server.rest_port}/v1/models/{name}{grpc}",
            file=sys.stderr,
            flush=True,
        )

    try:
        server.serve(on_ready=ready, on_stopping=(lambda: others.stop_soon()) if others else (lambda: None))
    except OSError as error:
        raise UsageError(f"cannot listen on {args.host}: {error.strerror or error}") from None
    finally:
        if others is not None:
            others.stop()
    print("skewless serve: stopped; in-flight requests were answered", file=sys.stderr, flush=True)
    return 0


def _options_of(args: argparse.Namespace) -> dict:
    """The ``ServerOptions`` fields given as flags (each flag is named as its field)."""
    import dataclasses

    from pipelines.serving.options import ServerOptions

    names = [field.name for field in dataclasses.fields(ServerOptions) if field.name != "reuse_port"]
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


_OWN_TO_EACH_PROCESS = ("port", "grpc_port", "processes")  # given to the others once the ports are bound


def _child_argv(args: argparse.Namespace) -> list[str]:
    """The other ``--processes``' arguments: this one's every server flag, but the ports."""
    argv = ["--model", args.model]
    for name, value in _options_of(args).items():
        if name not in _OWN_TO_EACH_PROCESS and value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv
