"""Runs one publisher: the relay log, what feeds it, and its Follow server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from typing import Protocol

from confluent_kafka import Consumer

from emostream.runtime import (
    add_standard_services,
    new_server,
    serve_until_signalled,
)
from emostream.runtime.kafka_logs import LibrdkafkaLog
from emostream.v1 import internal_pb2, internal_pb2_grpc
from publisher_svc.config import PublisherConfig
from publisher_svc.follower import Backoff, Follower
from publisher_svc.relay_log import RelayLog
from publisher_svc.relay_service import SwarmRelayServicer
from publisher_svc.sequencer import Sequencer
from publisher_svc.state import StateError, StateStore
from publisher_svc.swarm_source import SwarmSource

log = logging.getLogger(__name__)

SERVICE_NAME = internal_pb2.DESCRIPTOR.services_by_name["SwarmRelay"].full_name


class Feed(Protocol):
    """What fills the relay log: Kafka for the main publisher, else upstream."""

    async def run(self) -> None: ...


async def serve(config: PublisherConfig) -> int:
    """Serves until SIGTERM; returns the process exit status."""
    log.info("publisher.config %s", config)
    try:
        relay_log, feed = _main(config) if config.role == "main" else _cluster(config)
    except StateError as exc:
        log.error("publisher.state_unreadable error=%s", exc)
        return 2

    server = new_server()
    internal_pb2_grpc.add_SwarmRelayServicer_to_server(
        SwarmRelayServicer(relay_log, heartbeat_s=config.relay_heartbeat_s), server
    )
    health = add_standard_services(server, [SERVICE_NAME])
    server.add_insecure_port(config.listen)
    await server.start()
    log.info("publisher.listening address=%s role=%s", config.listen, config.role)

    failed = False

    def on_feed_done(task: asyncio.Task[None]) -> None:
        nonlocal failed
        if task.cancelled() or task.exception() is None:
            return
        failed = True
        log.error("publisher.feed_failed error=%r", task.exception())
        os.kill(os.getpid(), signal.SIGTERM)

    feed_task = asyncio.create_task(feed.run(), name="feed")
    feed_task.add_done_callback(on_feed_done)

    async def drain() -> None:
        relay_log.close()

    async def finish() -> None:
        if isinstance(feed, SwarmSource):
            feed.stop()
            await asyncio.wait([feed_task], timeout=5.0)
            feed.close()
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)

    await serve_until_signalled(
        server, health, [SERVICE_NAME], drain=drain, finish=finish, grace_s=1.0
    )
    return 1 if failed else 0


def _main(config: PublisherConfig) -> tuple[RelayLog, Feed]:
    assert config.state_dir is not None
    store = StateStore(config.state_dir)
    state = store.load()
    if state is None:
        relay_log = RelayLog(capacity=config.relay_history, log_id=uuid.uuid4().hex)
        sequencer = Sequencer()
        log.info("publisher.state_new log_id=%s", relay_log.log_id)
    else:
        relay_log = RelayLog(
            capacity=config.relay_history,
            log_id=state.log_id,
            newest_relay_seq=state.newest_relay_seq,
            history=state.history,
        )
        sequencer = Sequencer(state.matches)
        log.info(
            "publisher.state_loaded log_id=%s relay_seq=%d matches=%d",
            state.log_id,
            state.newest_relay_seq,
            len(state.matches),
        )
    consumer = Consumer(
        {
            "bootstrap.servers": config.kafka,
            "group.id": config.group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "logger": LibrdkafkaLog("publisher_svc.librdkafka"),
        }
    )
    source = SwarmSource(
        consumer=consumer,
        topic=config.swarm_topic,
        store=store,
        sequencer=sequencer,
        relay_log=relay_log,
    )
    return relay_log, source


def _cluster(config: PublisherConfig) -> tuple[RelayLog, Feed]:
    relay_log = RelayLog(capacity=config.relay_history)

    def keep(message: internal_pb2.RelayMessage) -> None:
        # A gap is a fact about one follow call, not about the kept message.
        message.history_gap = False
        relay_log.append(message)

    follower = Follower(
        upstream=config.upstream,
        follower_id=config.name,
        on_message=keep,
        on_restart=relay_log.reset,
        backoff=Backoff(config.backoff_initial_s, config.backoff_max_s),
        idle_timeout_s=config.upstream_idle_timeout_s,
    )
    return relay_log, follower
