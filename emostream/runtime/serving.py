"""gRPC server set-up shared by every role, sized for many long-lived streams."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

# Keepalive: clients ping every 20 s and give up after 10 s without an answer,
# so a dead peer (killed process, cut network) is noticed within about 30 s.
# The server accepts pings that often, even on connections with no open call.
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000

SERVER_OPTIONS: list[tuple[str, int]] = [
    # The core drops new calls past these when many streams open at once.
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 200_000),
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class _ReflectionPool:
    """The default descriptor pool, that also finds the file of a method.

    The upb-backed pool resolves services and messages but not
    ``package.Service.Method``, the symbol ghz and ``grpcurl describe`` ask
    reflection for.
    """

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> descriptor.FileDescriptor:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service_name, _, method = symbol.rpartition(".")
            service = self._pool.FindServiceByName(service_name)
            if method not in service.methods_by_name:
                raise
            return service.file


def new_server() -> grpc.aio.Server:
    """A grpc.aio server with the shared options and request decoding."""
    return grpc.aio.server(options=SERVER_OPTIONS, interceptors=[RequestDecoding()])


class RequestDecoding(grpc.aio.ServerInterceptor):
    """Answers a request that does not decode with INVALID_ARGUMENT.

    Left to grpcio, a body that is not the method's message (bad UTF-8 in a
    string, truncated bytes) fails before the handler runs: the caller gets
    UNKNOWN with Python internals and the log a traceback per call. Here the
    handler takes raw bytes and decodes them itself. Wrapped handlers are
    kept per method, so the cost per call is a dictionary look-up.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method in self._wrapped:
            return self._wrapped[method]
        handler = await continuation(handler_call_details)
        wrapped = _decoding(handler)
        self._wrapped[method] = wrapped
        return wrapped


def _decoding(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
    if handler is None or handler.request_streaming:
        return handler
    decode = handler.request_deserializer
    if decode is None:
        return handler

    async def decoded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        try:
            return decode(raw)
        except message.DecodeError as exc:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"request: cannot be decoded: {exc}"
            )

    serialize = handler.response_serializer
    if not handler.response_streaming:
        inner = handler.unary_unary

        async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await inner(await decoded(raw, context), context)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, response_serializer=serialize
        )

    stream = handler.unary_stream
    if inspect.isasyncgenfunction(stream):

        async def unary_stream_gen(
            raw: bytes, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            async for response in stream(await decoded(raw, context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream_gen, response_serializer=serialize
        )

    async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await stream(await decoded(raw, context), context)

    return grpc.unary_stream_rpc_method_handler(
        unary_stream, response_serializer=serialize
    )


def add_standard_services(
    server: grpc.aio.Server, service_names: Iterable[str]
) -> health.HealthServicer:
    """Adds health checking and reflection for ``service_names``.

    Every named service starts SERVING; the caller flips them to NOT_SERVING
    when it begins to drain.
    """
    names = list(service_names)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME],
        server,
        pool=_ReflectionPool(descriptor_pool.Default()),
    )
    return health_servicer


async def set_serving(
    health_servicer: health.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await health_servicer.set(name, status)


async def serve_until_signalled(
    server: grpc.aio.Server,
    health_servicer: health.HealthServicer,
    service_names: Iterable[str],
    *,
    drain: Callable[[], Awaitable[None]] | None = None,
    finish: Callable[[], Awaitable[None]] | None = None,
    grace_s: float = 10.0,
) -> None:
    """Runs ``server`` until SIGTERM or SIGINT, then shuts down in order.

    Order on a signal: report NOT_SERVING; run ``drain`` while calls still
    run (e.g. tell viewers to reconnect elsewhere); stop accepting and give
    in-flight calls ``grace_s``; run ``finish`` (e.g. flush queued records).
    """
    names = list(service_names)
    await set_serving(health_servicer, names, True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await stop.wait()
    log.info("shutdown.started grace_s=%s", grace_s)
    await set_serving(health_servicer, names, False)
    if drain is not None:
        await drain()
    await server.stop(grace_s)
    if finish is not None:
        await finish()
    log.info("shutdown.complete")
