"""``mmd exchange``: serve the embedded Bybit-compatible exchange on 127.0.0.1 (no config file needed).

On start it prints ONE JSON line to stdout, then structlog JSON lines::

    {"event":"exchange_listening","rest_url":"http://127.0.0.1:PORT","ws_url":"ws://127.0.0.1:PORT/v5/public/linear"}

SIGTERM / SIGINT stop it cleanly (exit 0). Exit 2 on a bad recording or bad flag values.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import orjson

from daemon.exchange.faults import MALFORMED_KINDS, REST_FAULTS, FaultPlan
from daemon.exchange.recording import RecordingError
from daemon.logging import configure_logging, get_logger


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: ephemeral, reported on stdout)")
    p.add_argument("--recording", metavar="FILE", default=None,
                   help="<recv_ns> <frame json> lines, .gz or plain (default: bundled BTCUSDT 5 min)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor; 0 = as fast as the client reads")
    p.add_argument("--no-loop", action="store_true", help="stop the replay at the end of the recording")
    p.add_argument("--max-args", type=int, default=10, help="max topics per subscribe request")
    p.add_argument("--funding-rate", default="0.0001", help="tickers fundingRate string")
    g = p.add_argument_group("fault injection")
    g.add_argument("--drop-after", type=int, metavar="N", help="abort each websocket after N data frames")
    g.add_argument("--drop-once", action="store_true", help="with --drop-after: drop only the first connection")
    g.add_argument("--gap-every", type=int, metavar="N", help="withhold every Nth book delta (u jumps)")
    g.add_argument("--crossed-after", type=int, metavar="N", help="send the (N+1)th book delta crossed, once")
    g.add_argument("--malformed-every", type=int, metavar="N", help="insert a malformed frame every N frames")
    g.add_argument("--malformed-kinds", default=",".join(MALFORMED_KINDS),
                   help=f"comma list cycled by --malformed-every (default all: {','.join(MALFORMED_KINDS)})")
    g.add_argument("--stall-after", type=int, metavar="N", help="stall all data after N frames, once")
    g.add_argument("--stall-seconds", type=float, default=5.0, metavar="S", help="stall length (default 5)")
    g.add_argument("--stall-no-pong", action="store_true", help="also withhold pongs during the stall")
    g.add_argument("--rest-fault", choices=list(REST_FAULTS), help="REST fault for the next requests")
    g.add_argument("--rest-fault-count", type=int, default=1, metavar="N", help="how many requests (default 1)")
    g.add_argument("--rest-slow-seconds", type=float, default=2.0, metavar="S", help="delay for --rest-fault slow")
    g.add_argument("--reject-topic", action="append", default=[], metavar="TOPIC",
                   help="refuse subscriptions to TOPIC (repeatable)")


def plan_from_args(args: argparse.Namespace) -> FaultPlan:
    return FaultPlan(
        drop_after=args.drop_after,
        drop_repeat=not args.drop_once,
        gap_every=args.gap_every,
        crossed_after=args.crossed_after,
        malformed_every=args.malformed_every,
        malformed_kinds=tuple(k.strip() for k in args.malformed_kinds.split(",") if k.strip()),
        stall_after=args.stall_after,
        stall_seconds=args.stall_seconds,
        stall_pongs=not args.stall_no_pong,
        rest_fault=args.rest_fault,
        rest_fault_count=args.rest_fault_count,
        rest_slow_seconds=args.rest_slow_seconds,
        reject_topics=set(args.reject_topic),
    )


async def _serve(args: argparse.Namespace, plan: FaultPlan) -> int:
    from daemon.exchange.server import ExchangeServer

    server = ExchangeServer(recording=args.recording, speed=args.speed, loop=not args.no_loop, host=args.host,
                            port=args.port, faults=plan, max_args=args.max_args, funding_rate=args.funding_rate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    line = {"event": "exchange_listening", "rest_url": server.rest_url, "ws_url": server.ws_url}
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()
    log = get_logger("daemon.exchange")
    log.info("exchange_started", rest_url=server.rest_url, ws_url=server.ws_url, speed=server.speed,
             loop=server.loop, recording=server.recording.path, frames=len(server.recording.frames))
    await stop.wait()
    log.info("exchange_signal", reason="stop requested")
    await server.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    configure_logging(getattr(args, "log_level", None) or "info", getattr(args, "log_format", None) or "json",
                      getattr(args, "log_stream", None))
    try:
        plan = plan_from_args(args)
        if args.speed < 0:
            raise ValueError("--speed must be >= 0")
    except ValueError as exc:
        print(f"mmd exchange: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args, plan))
    except (RecordingError, OSError) as exc:
        print(f"mmd exchange: {exc}", file=sys.stderr)
        return 2
