"""SwarmFeed.Subscribe: one viewer's stream of swarms from this node.

The handler is registered with pre-serialized responses: the fan-out queues
hand it bytes that were serialized once per broadcast, not once per viewer.
It writes them with ``context.write`` rather than yielding them, which spares
each delivery a step through an async generator.
"""

from __future__ import annotations

import logging
import re

import grpc

from emostream.v1 import emostream_pb2
from subscriber_svc.fanout import Fanout

log = logging.getLogger(__name__)

SERVICE_NAME = emostream_pb2.DESCRIPTOR.services_by_name["SwarmFeed"].full_name

_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def invalid_field(request: emostream_pb2.SubscribeRequest) -> str | None:
    """The message naming the first bad field of ``request``, or None."""
    for field in ("match_id", "viewer_id"):
        if not _ID.fullmatch(getattr(request, field)):
            return f"{field} must be 1-64 characters of [A-Za-z0-9_.:-]"
    return None


class SwarmFeed:
    """Serves Subscribe from a Fanout."""

    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout
        self.draining = False

    async def subscribe(
        self,
        request: emostream_pb2.SubscribeRequest,
        context: grpc.aio.ServicerContext,
    ) -> None:
        problem = invalid_field(request)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is draining")

        viewer = self._fanout.join(
            request.match_id, request.viewer_id, request.resume_after_seq
        )
        write = context.write
        next_nowait = viewer.next_nowait
        try:
            while True:
                payload = next_nowait()
                if payload is not None:
                    try:
                        await write(payload)
                    except Exception:
                        # The viewer went away while the write waited for it.
                        if context.done():
                            break
                        raise
                elif viewer.closed:
                    break
                else:
                    await viewer.wait()
        finally:
            self._fanout.leave(viewer)

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler; responses are written as the bytes given."""
        subscribe = grpc.unary_stream_rpc_method_handler(
            self.subscribe,
            request_deserializer=emostream_pb2.SubscribeRequest.FromString,
            response_serializer=None,
        )
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Subscribe": subscribe}
        )
