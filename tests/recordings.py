"""Where the real recordings are: outside the project, at a path given at run time.

EMOSTREAM_DATA_DIR names the folder; without it, ``shared/data`` beside the
checkout. Tests that need a recording skip with this path in the reason when
it is absent.
"""

from __future__ import annotations

import os
import pathlib

DATA_DIR = pathlib.Path(
    os.environ.get(
        "EMOSTREAM_DATA_DIR",
        pathlib.Path(__file__).resolve().parents[2] / "shared/data",
    )
)
CRICSHEET_DIR = DATA_DIR / "cricsheet"
