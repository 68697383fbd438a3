import asyncio
import sys

from emostream.runtime import configure_logging
from subscriber_svc.config import SubscriberConfig
from subscriber_svc.server import serve

if __name__ == "__main__":
    config = SubscriberConfig.from_args()
    configure_logging(config.name)
    sys.exit(asyncio.run(serve(config)))
