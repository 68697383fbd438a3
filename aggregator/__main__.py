"""``python -m aggregator``: runs the streaming job (see aggregator.job)."""

import sys

from aggregator.job import main

sys.exit(main())
