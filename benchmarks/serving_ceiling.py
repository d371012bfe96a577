"""The ceiling of each serving stack on this machine: servers that do nothing, under the same load.

    .venv/bin/python benchmarks/serving_ceiling.py [--clients 16] [--requests 4000]

`benchmarks/serving_load.py` loads `skewless serve`; this loads a do-nothing aiohttp handler and
do-nothing gRPC `Predict` handlers (grpc.aio, and the thread-pool server), each in a process of its
own, with the same Python clients (16 keep-alive clients, a connection each). What a stack manages
with no work at all bounds what it can manage with a model behind it; ``srv ms`` is the server
process's CPU time per request, what the stack itself costs.
"""

import argparse
import asyncio
import concurrent.futures
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.serving_load import grpc_sender, rest_sender, run_clients  # noqa: E402


def _serve_rest() -> None:
    from aiohttp import web

    async def predict(request):
        await request.read()
        return web.json_response({"predictions": []})

    app = web.Application()
    app.router.add_post("/v1/models/default:predict", predict)

    async def main():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _serve_grpc(kind: str) -> None:
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            return predict_pb2.PredictResponse()

    class AsyncService(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802
            return predict_pb2.PredictResponse()

    if kind == "grpc-threads":
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(16))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        server.start()
        server.wait_for_termination()
        return

    async def main():
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(AsyncService(), server)
        print(server.add_insecure_port("127.0.0.1:0"), flush=True)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a server process of this benchmark
    args = parser.parse_args()
    if args.serve:
        _serve_rest() if args.serve == "rest" else _serve_grpc(args.serve)
        return
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    print(f"{'stack (no work)':<26}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>7}{'srv ms':>8}")
    for kind in ("rest", "grpc-aio", "grpc-threads"):
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            port = int(server.stdout.readline())
            send = rest_sender(port, [b'{"instances": [{}]}']) if kind == "rest" else grpc_sender(port, [request])
            run_clients(args.clients, 200, 30, send)  # warm up
            result = run_clients(args.clients, args.requests, 60, send, server.pid)
        finally:
            server.terminate()
            server.wait()
        name = {"rest": "aiohttp (REST)", "grpc-aio": "grpc.aio (gRPC)", "grpc-threads": "grpc, threads (gRPC)"}[kind]
        print(
            f"{name:<26}{args.clients:>8}{result['per_second']:>9.0f}{result['p50_ms']:>9.1f}"
            f"{result['p99_ms']:>9.1f}{result['errors']:>7}"
            + ("" if result["server_ms"] is None else f"{result['server_ms']:>8.2f}")
        )


if __name__ == "__main__":
    main()
