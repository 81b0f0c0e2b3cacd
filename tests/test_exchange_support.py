"""Helpers shared by the ``test_exchange_*`` tests (no tests here).

``RefBook`` is a tiny reference applier written independently of both the exchange's book and the
daemon's book: Decimal-keyed dicts, Bybit rules (snapshot replaces, size "0" deletes, sizes absolute).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from decimal import Decimal
from pathlib import Path

from daemon.exchange.recording import bundled_recording_path


class RefBook:
    def __init__(self) -> None:
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}
        self.u: int | None = None

    def apply(self, msg: dict) -> None:
        data = msg["data"]
        if msg["type"] == "snapshot":
            self.bids, self.asks = {}, {}
        for side, key in ((self.bids, "b"), (self.asks, "a")):
            for p, s in data[key]:
                if Decimal(s) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = s
        self.u = data["u"]

    def levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids = [(f"{p:.2f}", s) for p, s in sorted(self.bids.items(), reverse=True)]
        asks = [(f"{p:.2f}", s) for p, s in sorted(self.asks.items())]
        return bids, asks

    def crossed(self) -> bool:
        return bool(self.bids and self.asks and max(self.bids) >= min(self.asks))


def bundled_lines(n: int | None = None) -> list[bytes]:
    with gzip.open(bundled_recording_path(), "rb") as fh:
        lines = fh.read().split(b"\n")
    lines = [ln for ln in lines if ln.strip()]
    return lines if n is None else lines[:n]


def small_recording(tmp_path: Path, n: int = 300, name: str = "small.bybit") -> Path:
    """The first ``n`` lines of the bundled recording as a plain-text file."""
    p = tmp_path / name
    p.write_bytes(b"\n".join(bundled_lines(n)) + b"\n")
    return p


async def recv_json(ws, timeout: float = 5.0):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def recv_until(ws, pred, timeout: float = 10.0, limit: int = 100_000) -> tuple[dict, list[dict]]:
    """Receive JSON frames until ``pred(frame)``; returns (that frame, all frames seen)."""
    seen: list[dict] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    for _ in range(limit):
        m = await recv_json(ws, max(0.01, end - loop.time()))
        seen.append(m)
        if pred(m):
            return m, seen
    raise AssertionError("predicate never satisfied")


async def subscribe(ws, args: list[str], req_id: str = "r1") -> dict:
    """Send a subscribe and return its ack (data frames before it are not expected here)."""
    await ws.send(json.dumps({"op": "subscribe", "req_id": req_id, "args": args}))
    ack, _ = await recv_until(ws, lambda m: m.get("op") == "subscribe" and m.get("req_id") == req_id)
    return ack


def multi_symbol_recording(tmp_path: Path, n: int, copies: tuple[str, ...], name: str = "multi.bybit") -> Path:
    """The first ``n`` lines of the bundled recording, each followed by a copy per symbol in
    ``copies`` (``BTCUSDT`` renamed in topic and data): a recording that serves several symbols."""
    out = []
    for ln in bundled_lines(n):
        out.append(ln)
        out += [ln.replace(b"BTCUSDT", sym.encode()) for sym in copies]
    p = tmp_path / name
    p.write_bytes(b"\n".join(out) + b"\n")
    return p
