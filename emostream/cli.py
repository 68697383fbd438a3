"""The ``emostream`` command: send a tap, watch a match, replay or fake a crowd.

    emostream send MATCH USER EMOJI
    emostream watch MATCH [--count N]
    emostream replay FILE [--match M] [--speed X] [--amplify K] [--limit N]
    emostream crowd [--match M]... [--duration S] [--cricsheet FILE]

Exit status: 0 done, 1 the service failed, 2 bad input (the message names
the field), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import pathlib
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TextIO

from emostream.client import (
    DEFAULT_ADDRESS,
    MAX_BATCH,
    Client,
    EmoStreamError,
    InvalidArgument,
    Swarm,
)
from emostream.crowd import CrowdShape, match_night
from emostream.replay import (
    ReadStats,
    ReplayFileError,
    ReplayReport,
    ScheduledBatch,
    parse_ts,
    play,
    read_reactions,
    schedule,
)
from emostream.runtime import configure_logging
from emostream.v1 import emostream_pb2

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_MATCH_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


# Arguments ---------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _timestamp(text: str) -> dt.datetime:
    try:
        return parse_ts(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None


def default_address() -> str:
    """Envoy of a local mesh started with the same EMOSTREAM_PORT_BASE."""
    base = os.environ.get("EMOSTREAM_PORT_BASE", "").strip()
    return f"127.0.0.1:{base}" if base.isdigit() else DEFAULT_ADDRESS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emostream",
        description="Send emoji taps to EmoStream and watch the swarms.",
    )
    parser.add_argument(
        "--address",
        default=default_address(),
        help="host:port of EmoStream's gRPC listener (default 127.0.0.1 at "
        f"port EMOSTREAM_PORT_BASE when set, else {DEFAULT_ADDRESS})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser("send", help="send one tap, print the canonical emoji")
    send.add_argument("match", help="match id")
    send.add_argument("user", help="user id of the viewer who tapped")
    send.add_argument("emoji", help="exactly one emoji")
    send.add_argument("--at", type=_timestamp, help="tap time, ISO-8601 (default now)")

    watch = commands.add_parser("watch", help="show a match's swarms as they come")
    watch.add_argument("match", help="match id")
    watch.add_argument("--viewer", help="viewer id (default: a random one)")
    watch.add_argument(
        "--resume-after", type=int, default=0, metavar="SEQ",
        help="first replay the swarms after this seq",
    )  # fmt: skip
    watch.add_argument(
        "--count", type=_positive_int, metavar="N", help="stop after N swarms"
    )
    watch.add_argument("--once", action="store_true", help="stop after one swarm")
    watch.add_argument(
        "--width", type=_positive_int, default=40,
        help="most emojis drawn per line (default 40)",
    )  # fmt: skip
    watch.add_argument(
        "--plain", action="store_true",
        help="print one block per swarm instead of redrawing",
    )  # fmt: skip

    replay = commands.add_parser("replay", help="replay a CSV of recorded reactions")
    replay.add_argument(
        "file", type=pathlib.Path, help="CSV with columns ts,user,emoji"
    )
    replay.add_argument("--match", help="match id (default: from the file name)")
    _add_pacing(replay)
    replay.add_argument(
        "--amplify", type=_positive_int, default=1, metavar="K",
        help="taps per recorded reaction, from K derived user ids (default 1)",
    )  # fmt: skip
    replay.add_argument(
        "--limit", type=_positive_int, metavar="N", help="replay the first N rows"
    )

    fake = commands.add_parser("crowd", help="send taps from a synthetic crowd")
    fake.add_argument(
        "--match", action="append", dest="matches", metavar="M",
        help="a match to tap for; repeat for several (default crowd-1)",
    )  # fmt: skip
    _add_pacing(fake, duration_default=60.0)
    fake.add_argument(
        "--viewers", type=_positive_int, default=500,
        help="viewers per match who tap, each a user id (default 500)",
    )  # fmt: skip
    fake.add_argument(
        "--rate", type=float, default=20.0, help="background taps/s per match"
    )
    fake.add_argument(
        "--burst", type=int, default=400, help="taps after each six, four or wicket"
    )
    fake.add_argument(
        "--cricsheet", type=pathlib.Path, metavar="FILE",
        help="Cricsheet JSON or ball-by-ball CSV whose events drive every match",
    )  # fmt: skip
    fake.add_argument(
        "--ball-interval", type=_positive_float, default=4.0, metavar="S",
        help="seconds per delivery (default 4)",
    )  # fmt: skip
    fake.add_argument(
        "--seed", type=int, default=0,
        help="random seed: the same seed sends the same crowd (default 0)",
    )  # fmt: skip
    return parser


def _add_pacing(
    command: argparse.ArgumentParser, *, duration_default: float | None = None
) -> None:
    command.add_argument(
        "--speed", type=_positive_float, default=1.0, metavar="X",
        help="pace factor: 2 replays twice as fast (default 1)",
    )  # fmt: skip
    command.add_argument(
        "--duration", type=_positive_float, default=duration_default, metavar="S",
        help="stop after S seconds of sending",
    )  # fmt: skip
    command.add_argument(
        "--max-batch", type=_positive_int, default=MAX_BATCH, metavar="N",
        help=f"most taps per SendEmojis call (default {MAX_BATCH})",
    )  # fmt: skip
    command.add_argument(
        "--quiet", action="store_true", help="print only the final summary"
    )


# Commands ----------------------------------------------------------------------


async def run_send(args: argparse.Namespace, out: TextIO) -> int:
    async with Client(args.address) as client:
        canonical = await client.send(args.match, args.user, args.emoji, at=args.at)
    print(canonical, file=out)
    return EXIT_OK


async def run_watch(args: argparse.Namespace, out: TextIO) -> int:
    limit = 1 if args.once else args.count
    redraw = not args.plain and out.isatty()
    drawn_lines = 0
    seen = 0
    async with Client(args.address) as client:
        async for swarm in client.subscribe(
            args.match, viewer_id=args.viewer, resume_after_seq=args.resume_after
        ):
            block = render_swarm(swarm, received_s=time.time(), width=args.width)
            if redraw and drawn_lines:
                out.write(f"\x1b[{drawn_lines}F\x1b[J")
            out.write("\n".join(block) + "\n")
            out.flush()
            drawn_lines = len(block)
            if swarm.notice != emostream_pb2.NOTICE_SWARM:
                continue
            seen += 1
            if limit is not None and seen >= limit:
                break
    return EXIT_OK


def render_swarm(swarm: Swarm, *, received_s: float, width: int) -> list[str]:
    """The lines that show one swarm; emojis repeated ``shown`` times, capped."""
    if swarm.notice == emostream_pb2.NOTICE_HISTORY_GAP:
        return [
            f"match {swarm.match_id}  history gap: swarms lost to this viewer "
            f"(notice first_seq {swarm.first_seq}, seq {swarm.seq})"
        ]
    merged = (
        f" (merged {swarm.first_seq}-{swarm.seq})"
        if swarm.first_seq < swarm.seq
        else ""
    )
    lines = [
        f"match {swarm.match_id}  seq {swarm.seq}{merged}  viewers {swarm.viewers}  "
        f"taps {swarm.total}"
    ]
    for count in sorted(swarm.emojis, key=lambda c: (-c.raw, c.emoji)):
        drawn = count.emoji * min(count.shown, width)
        more = f" +{count.shown - width}" if count.shown > width else ""
        lines.append(f"  {drawn}{more}  ({count.raw})")

    parts = []
    if swarm.taps:
        newest_s = max(b.start_unix_ms for b in swarm.taps) / 1000
        parts.append(f"since newest tap {received_s - newest_s:.2f} s")
    if swarm.HasField("window_end"):
        window_end_s = swarm.window_end.ToNanoseconds() / 1e9
        parts.append(f"since window end {received_s - window_end_s:.2f} s")
    if parts:
        lines.append("  latency: " + ", ".join(parts))
    return lines


async def run_replay(args: argparse.Namespace, out: TextIO) -> int:
    match_id = args.match or _match_id_from(args.file)
    stats = ReadStats()
    reactions = read_reactions(args.file, limit=args.limit, stats=stats)
    batches = schedule(
        reactions,
        match_id=match_id,
        speed=args.speed,
        amplify=args.amplify,
        duration_s=args.duration,
        tick_s=0.05,
    )
    print(
        f"replaying {args.file} as match {match_id} at speed {args.speed:g} "
        f"amplify {args.amplify} to {args.address}",
        file=out,
    )
    report = await _play(args, batches, out)
    if stats.unreadable:
        print(f"skipped rows_with_unreadable_ts={stats.unreadable}", file=out)
    return EXIT_FAILED if report.failed_total else EXIT_OK


async def run_crowd(args: argparse.Namespace, out: TextIO) -> int:
    matches = args.matches or ["crowd-1"]
    events, batches = match_night(
        matches,
        duration_s=args.duration,
        speed=args.speed,
        shape=CrowdShape(
            viewers=args.viewers, base_rate_per_s=args.rate, burst_taps=args.burst
        ),
        cricsheet=args.cricsheet,
        ball_interval_s=args.ball_interval,
        seed=args.seed,
    )
    print(
        f"crowd of {args.viewers} per match for {', '.join(matches)}: "
        f"{len(events)} events in {args.duration:g} s to {args.address}",
        file=out,
    )
    report = await _play(args, batches, out)
    return EXIT_FAILED if report.failed_total else EXIT_OK


async def _play(
    args: argparse.Namespace, batches: Iterable[ScheduledBatch], out: TextIO
) -> ReplayReport:
    def progress(report: ReplayReport) -> None:
        print(
            f"progress sent={report.sent} accepted={report.accepted} "
            f"refused={report.refused_total} failed={report.failed_total} "
            f"behind_s={report.behind_s:.2f}",
            file=out,
            flush=True,
        )

    async with Client(args.address, max_batch=args.max_batch) as client:
        report = await play(client, batches, progress=None if args.quiet else progress)
    for line in report.summary_lines():
        print(line, file=out)
    return report


def _match_id_from(path: pathlib.Path) -> str:
    return _MATCH_ID_UNSAFE.sub("-", path.stem)[:64] or "replay"


# Entry point -------------------------------------------------------------------

_COMMANDS = {
    "send": run_send,
    "watch": run_watch,
    "replay": run_replay,
    "crowd": run_crowd,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging("emostream")
    if "EMOSTREAM_LOG_LEVEL" not in os.environ:
        logging.getLogger().setLevel(logging.WARNING)

    out = sys.stdout
    try:
        return asyncio.run(_COMMANDS[args.command](args, out))
    except InvalidArgument as exc:
        field = exc.field or "input"
        print(f"emostream: error: invalid {field}: {exc.reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ReplayFileError, OSError) as exc:
        print(f"emostream: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EmoStreamError as exc:
        print(f"emostream: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
