import asyncio
import sys

from emostream.runtime import configure_logging
from publisher_svc.config import PublisherConfig
from publisher_svc.server import serve

if __name__ == "__main__":
    config = PublisherConfig.from_args()
    configure_logging(config.name)
    sys.exit(asyncio.run(serve(config)))
