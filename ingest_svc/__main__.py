"""Runs one ingest process: python -m ingest_svc --listen HOST:PORT --kafka ..."""

from __future__ import annotations

import asyncio
import logging
import sys

from emostream.runtime import (
    add_standard_services,
    configure_logging,
    new_server,
    serve_until_signalled,
)
from emostream.v1 import emostream_pb2, emostream_pb2_grpc
from ingest_svc import metrics
from ingest_svc.config import IngestConfig, from_args
from ingest_svc.producer import TapProducer
from ingest_svc.servicer import EmojiIngest, NoopIngest

log = logging.getLogger("ingest_svc")

_SERVICES = emostream_pb2.DESCRIPTOR.services_by_name
INGEST_SERVICE = _SERVICES["EmojiIngest"].full_name
# Reflection shows the whole public contract, so that grpcurl through Envoy
# lists SwarmFeed too; health reports only what this process serves.
PUBLIC_SERVICES = [service.full_name for service in _SERVICES.values()]


async def serve(config: IngestConfig) -> None:
    """Serves EmojiIngest until SIGTERM, then drains calls and flushes Kafka."""
    server = new_server()
    producer: TapProducer | None = None
    servicer: emostream_pb2_grpc.EmojiIngestServicer
    if config.noop:
        servicer = NoopIngest()
    else:
        producer = TapProducer(config)
        producer.start()
        servicer = EmojiIngest(
            producer, max_skew_s=config.max_skew_s, max_batch=config.max_batch
        )
    emostream_pb2_grpc.add_EmojiIngestServicer_to_server(servicer, server)
    health = add_standard_services(server, PUBLIC_SERVICES)

    if server.add_insecure_port(config.listen) == 0:
        raise SystemExit(f"cannot listen on {config.listen}")
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    await server.start()
    log.info("ingest.started listen=%s noop=%s", config.listen, config.noop)

    await serve_until_signalled(
        server,
        health,
        [INGEST_SERVICE],
        finish=producer.close if producer is not None else None,
        grace_s=config.grace_s,
    )


def main(argv: list[str] | None = None) -> int:
    config = from_args(argv)
    configure_logging("ingest")
    log.info("config.effective %s", config.describe())
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
