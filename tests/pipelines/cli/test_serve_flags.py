"""``skewless serve --processes N`` hands every server flag to the other processes."""

import dataclasses

import pytest

from pipelines.cli.commands import serve
from pipelines.cli.entry import build_parser
from pipelines.serving.options import ServerOptions

pytestmark = pytest.mark.unit

GIVEN = [
    *("--model", "served", "--host", "0.0.0.0", "--model-name", "taxi", "--max-batch-size", "64"),
    *("--batch-timeout-ms", "0.25", "--workers", "3", "--max-queued", "9", "--request-timeout-ms", "1500"),
    *("--max-request-bytes", "4096", "--processes", "2", "--port", "8601", "--grpc-port", "8600"),
]


def test_every_server_flag_reaches_the_other_processes_and_only_the_ports_are_their_own():
    parser = build_parser()
    args = parser.parse_args(["serve", *GIVEN])
    child = parser.parse_args(["serve", *serve._child_argv(args), "--port", "1", "--grpc-port", "2"])
    mine, theirs = serve._options_of(args), serve._options_of(child)
    assert {name for name in mine if mine[name] != theirs[name]} == {"port", "grpc_port", "processes"}
    assert child.model == "served" and theirs["processes"] == 1
    # each flag given above is a ServerOptions field, and each field but two is a flag
    fields = {field.name for field in dataclasses.fields(ServerOptions)}
    assert set(mine) == fields - {"reuse_port", "drain_seconds"}
    assert mine == {
        "host": "0.0.0.0", "port": 8601, "grpc_port": 8600, "model_name": "taxi", "max_batch_size": 64,
        "batch_timeout_ms": 0.25, "workers": 3, "max_queued": 9, "request_timeout_ms": 1500.0,
        "max_request_bytes": 4096, "processes": 2,
    }  # fmt: skip
