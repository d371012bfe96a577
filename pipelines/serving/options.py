"""How ``skewless serve`` serves: its flags as one object (no TensorFlow import, for the parser)."""

import dataclasses

__all__ = ["ServerOptions"]


@dataclasses.dataclass
class ServerOptions:
    """How ``skewless serve`` serves (the command's flags).

    Attributes:
        host: Address to bind.
        port: REST port (0: a free one).
        grpc_port: gRPC port (None: no gRPC; 0: a free one).
        model_name: The ``<name>`` in ``/v1/models/<name>``.
        max_batch_size: Most examples in one graph call.
        batch_timeout_ms: How long a batch waits for more requests while another graph call runs.
        workers: Threads making graph calls.
        max_queued: Requests waiting for the graph at most (one more: 503).
        request_timeout_ms: A request not answered by then gets a 504.
        max_request_bytes: A larger body gets a 413.
        drain_seconds: On SIGTERM, how long in-flight requests may take.
        processes: Server processes sharing the ports (``SO_REUSEPORT``: the kernel spreads
            connections over them), each with its own copy of the model.
        reuse_port: Bind with ``SO_REUSEPORT`` (set for every process when ``processes`` > 1).
    """

    host: str = "127.0.0.1"
    port: int = 8501
    grpc_port: int | None = None
    model_name: str = "default"
    max_batch_size: int = 1024
    batch_timeout_ms: float = 1.0
    workers: int = 2
    max_queued: int = 1024
    request_timeout_ms: float = 30_000
    max_request_bytes: int = 32 << 20
    drain_seconds: float = 30.0
    processes: int = 1
    reuse_port: bool = False
