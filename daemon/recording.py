"""Recordings: ``<recv_ns> <frame json>`` lines, plain or gzip, the format of the files we ship.

:class:`RecordingWriter` (used by ``mmd record`` and ``mmd run --record``) writes gzip files that
rotate by size or age; each file is a valid stream on its own once closed. A sidecar
``<file>.instruments.json`` keeps the instrument filters so ``mmd replay`` needs no network.
:func:`read_frames` reads one or more files back in order.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from daemon.core.instrument import Instrument, btcusdt_linear

BUNDLED = "linear_BTCUSDT_2024-08-08_5min.bybit.gz"


def bundled_recording() -> Path:
    """Path of the real BTCUSDT recording shipped inside the package."""
    return Path(str(files("daemon") / "data" / BUNDLED))


def bundled_adverse_model() -> Path:
    """The adverse-selection model shipped for the demo: ``mmd train-adverse`` on the first 70% of
    the bundled recording (validation AUC 0.68 on the last 30%; see docs/models.md)."""
    return Path(str(files("daemon") / "data" / "adverse_btcusdt.json"))


class RecordingError(ValueError):
    """A recording line that is not ``<int recv_ns> <json>``."""


def read_frames(paths: list[str | os.PathLike[str]]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(recv_ns, frame_bytes)`` from each file in order (``.gz`` by magic bytes).
    Blank lines are skipped; a line without a valid ``recv_ns`` raises :class:`RecordingError`
    naming the file and line number."""
    for p in paths:
        with open(p, "rb") as raw:
            magic = raw.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(p, "rb") as f:  # type: ignore[operator]
            for n, line in enumerate(f, 1):
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                sp = line.find(b" ")
                try:
                    ns = int(line[:sp]) if sp > 0 else None
                except ValueError:
                    ns = None
                if ns is None:
                    raise RecordingError(f"{p}:{n}: expected '<recv_ns> <frame json>'")
                yield ns, line[sp + 1 :]


SIDECAR_SUFFIX = ".instruments.json"


def split_sidecars(paths: list[str]) -> tuple[list[str], list[str]]:
    """``(recordings, sidecars)`` of ``paths``: ``rec/*`` after ``mmd record --out rec`` names each
    recording's ``.instruments.json`` sidecar too, which is not a recording (:func:`load_instruments`
    finds it next to its recording)."""
    side = [p for p in paths if str(p).endswith(SIDECAR_SUFFIX)]
    return [p for p in paths if not str(p).endswith(SIDECAR_SUFFIX)], side


def load_instruments(paths: list[str | os.PathLike[str]], symbols: list[str]) -> dict[str, Instrument]:
    """Instrument filters for a replay: the sidecar of the first recording that has one, else the
    built-in BTCUSDT filters. Raises ``ValueError`` for a symbol with no known filters."""
    found: dict[str, Instrument] = {}
    for p in paths:
        side = Path(str(p) + SIDECAR_SUFFIX)
        if side.exists():
            for row in json.loads(side.read_text()):
                inst = Instrument(**row)
                found.setdefault(inst.symbol, inst)
    if "BTCUSDT" not in found:
        found["BTCUSDT"] = btcusdt_linear()
    missing = [s for s in symbols if s not in found]
    if missing:
        raise ValueError(f"no instrument filters for {missing}: record with `mmd record` (writes a sidecar)")
    return {s: found[s] for s in symbols}


def instrument_row(inst: Instrument) -> dict:
    return {
        "symbol": inst.symbol, "category": inst.category, "tick_size": inst.tick_size, "qty_step": inst.qty_step,
        "min_qty_lots": inst.min_qty_lots, "max_qty_lots": inst.max_qty_lots, "min_notional": inst.min_notional,
        "funding_interval_min": inst.funding_interval_min, "contract_type": inst.contract_type, "status": inst.status,
    }


class RecordingWriter:
    """Append frames to ``<dir>/<prefix>-<utc time>.bybit.gz``, rotating after ``max_bytes`` of
    raw input or ``max_age_s`` seconds. ``path`` may also name one exact file (no rotation)."""

    def __init__(self, path: str | os.PathLike[str], *, rotate: bool = False, max_bytes: int = 256 << 20,
                 max_age_s: float = 3600.0, instruments: dict[str, Instrument] | None = None) -> None:
        self.base = Path(path)
        self.rotate = rotate
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.instruments = instruments or {}
        self.files: list[Path] = []
        self.frames = 0
        self._f: io.BufferedWriter | gzip.GzipFile | None = None
        self._bytes = 0
        self._opened = 0.0

    def _open(self) -> None:
        if self.rotate:
            self.base.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            p = self.base / f"mmd-{stamp}-{len(self.files):04d}.bybit.gz"
        else:
            self.base.parent.mkdir(parents=True, exist_ok=True)
            p = self.base
        self._f = gzip.open(p, "wb", compresslevel=5)
        self._bytes = 0
        self._opened = time.monotonic()
        self.files.append(p)
        if self.instruments:
            Path(str(p) + SIDECAR_SUFFIX).write_text(
                json.dumps([instrument_row(i) for i in self.instruments.values()], indent=1)
            )

    def write(self, recv_ns: int, frame: bytes | str) -> None:
        if self._f is None:
            self._open()
        elif self.rotate and (self._bytes >= self.max_bytes or time.monotonic() - self._opened >= self.max_age_s):
            self.close()
            self._open()
        if isinstance(frame, str):
            frame = frame.encode()
        line = b"%d %s\n" % (recv_ns, frame.replace(b"\n", b""))
        assert self._f is not None
        self._f.write(line)
        self._bytes += len(line)
        self.frames += 1

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
