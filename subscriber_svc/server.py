"""Runs one subscriber node: the follower, the fan-out and the SwarmFeed server."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from emostream.runtime import (
    add_standard_services,
    new_server,
    serve_until_signalled,
)
from publisher_svc.follower import Backoff, Follower
from subscriber_svc.config import SubscriberConfig
from subscriber_svc.fanout import Fanout
from subscriber_svc.feed_service import SERVICE_NAME, SwarmFeed

log = logging.getLogger(__name__)

HEARTBEAT_SWEEP_S = 1.0

# Garbage collection thresholds. Every delivery allocates a few short-lived
# objects, and with the default thresholds the collector runs so often over
# thousands of open streams that it took a fifth of the node's CPU. Nothing
# on the delivery path makes reference cycles, so collecting rarely is safe.
GC_THRESHOLDS = (50_000, 20, 100)


async def serve(config: SubscriberConfig) -> int:
    """Serves until SIGTERM; returns the process exit status."""
    log.info("subscriber.config %s", config)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    fanout = Fanout(
        history_max=config.swarm_history,
        queue_max=config.viewer_queue,
        heartbeat_s=config.viewer_heartbeat_s,
        room_idle_s=config.room_idle_s,
    )
    follower = Follower(
        upstream=config.upstream,
        follower_id=config.name,
        on_message=lambda message: fanout.publish(message.swarm),
        on_restart=lambda _log_id: fanout.restart(),
        backoff=Backoff(config.backoff_initial_s, config.backoff_max_s),
        idle_timeout_s=config.upstream_idle_timeout_s,
    )
    feed = SwarmFeed(fanout)

    server = new_server()
    server.add_generic_rpc_handlers((feed.handler(),))
    health = add_standard_services(server, [SERVICE_NAME])
    server.add_insecure_port(config.listen)
    await server.start()
    log.info("subscriber.listening address=%s", config.listen)

    follow_task = asyncio.create_task(follower.run(), name="follow")
    heartbeat_task = asyncio.create_task(_heartbeat_routine(fanout), name="heartbeat")

    async def drain() -> None:
        feed.draining = True
        viewers = fanout.viewer_count
        fanout.drain()
        deadline = time.monotonic() + config.drain_s
        while fanout.viewer_count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info(
            "subscriber.drained viewers=%d left_open=%d", viewers, fanout.viewer_count
        )

    async def finish() -> None:
        for task in (follow_task, heartbeat_task):
            task.cancel()
        await asyncio.gather(follow_task, heartbeat_task, return_exceptions=True)

    await serve_until_signalled(
        server, health, [SERVICE_NAME], drain=drain, finish=finish, grace_s=1.0
    )
    return 0


async def _heartbeat_routine(fanout: Fanout) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SWEEP_S)
        fanout.heartbeat()
