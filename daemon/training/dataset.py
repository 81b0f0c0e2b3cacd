"""Adverse-selection training rows from a recording (pure and deterministic: no clock, no I/O
besides reading the recording file).

A recording has one frame per line: ``<recv_ns> <frame json>`` (gzip or plain text). The replay
drives the same code as the daemon: :class:`FrameParser` -> :class:`OrderBook` (the primary
``orderbook.{depth}`` topic) -> :class:`FeatureState` (book updates while LIVE, public trades,
klines). Other topics (e.g. ``orderbook.1``) are parsed and ignored.

**Decision ticks** sit on a fixed clock ``k * decision_ms`` (exchange ms). A row at tick ``g`` is
taken after every event whose feature-clock time is ``<= g`` (the feature state is advanced with
``on_timer(g)``), while the book is LIVE, once ``warmup_s`` has passed since the first book
(default: the longest feature time window, ``max(trade_window_s, ofi_window_s)``, so that no
windowed feature is still filling up).

**Labels** (:func:`label_adverse`). ``mid2 = best_bid + best_ask`` in ticks (twice the mid,
exact). For a decision at ``g`` with ``mid2_g``, over the future book updates with time in
``(g, g + H]``:

* the **bid** is adverse when ``mid2_g - min(mid2) > 2 X`` (the mid falls by more than ``X`` ticks:
  a fill of our bid would be followed by a move against it);
* the **ask** is adverse when ``max(mid2) - mid2_g > 2 X``.

Rows whose horizon runs past the end of the recording are dropped (``valid`` false).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from daemon.bybit.messages import FrameError, FrameParser
from daemon.core.book import OrderBook
from daemon.core.events import BookUpdate, Kline, Trade
from daemon.core.instrument import Instrument
from daemon.features import FeatureParams, FeatureState


class RecordingError(ValueError):
    """A recording that cannot be used (missing, unreadable, no book)."""


@dataclass
class Replay:
    """Feature rows at decision ticks plus the mid path of the primary book."""

    source: str
    names: list[str]
    t_ms: np.ndarray  # decision times (ms), ascending
    X: np.ndarray  # (rows, len(names)) raw feature values (float64; may hold NaN)
    mid2: np.ndarray  # bid + ask (ticks) at each decision
    path_t_ms: np.ndarray  # feature-clock time of each primary book update
    path_mid2: np.ndarray  # bid + ask (ticks) after each update (0 = one-sided)
    bad_lines: int = 0
    frame_errors: dict = field(default_factory=dict)


@dataclass
class Dataset:
    """Labelled decision rows of one or more recordings, in time order."""

    names: list[str]
    t_ms: np.ndarray
    X: np.ndarray
    y_bid: np.ndarray  # bool
    y_ask: np.ndarray  # bool
    sources: list[str]
    span_ms: tuple[int, int]

    def __len__(self) -> int:
        return len(self.t_ms)


def iter_recording(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Yield ``(recv_ns, frame)`` per line. Blank lines are skipped; a line without a leading
    integer is yielded as ``(-1, line)`` so the caller counts it."""
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"recording {str(p)!r}: not found")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                head, _, rest = line.partition(b" ")
                try:
                    yield int(head), rest
                except ValueError:
                    yield -1, line
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise RecordingError(f"recording {str(p)!r}: unreadable: {e}") from None


def replay_features(
    path: str | Path,
    instrument: Instrument,
    names: Sequence[str],
    features: FeatureParams | None = None,
    *,
    depth: int = 50,
    decision_ms: int = 250,
    warmup_s: float | None = None,
) -> Replay:
    """Replay one recording and sample ``names`` at every decision tick (see module docstring)."""
    if decision_ms <= 0:
        raise ValueError(f"decision_ms must be > 0, got {decision_ms}")
    sym = instrument.symbol
    parser = FrameParser({sym: instrument})
    book = OrderBook(sym, depth)
    fs = FeatureState(instrument, features)
    if warmup_s is None:
        warmup_s = default_warmup_s(fs.params)
    names = list(names)
    rows: list[list[float]] = []
    t_rows: list[int] = []
    m_rows: list[int] = []
    path_t: list[int] = []
    path_m: list[int] = []
    bad_lines = 0
    clock = -(1 << 62)
    next_dec: int | None = None
    first_book_ms: int | None = None
    warm_ms = int(round(warmup_s * 1000))
    was_live = False

    def decide_until(ts: int) -> None:
        nonlocal next_dec
        if next_dec is None:
            return
        while next_dec < ts:
            g = next_dec
            next_dec += decision_ms
            if not book.live or first_book_ms is None or g - first_book_ms < warm_ms:
                continue
            bb, ba = book.best_bid, book.best_ask
            if bb is None or ba is None:
                continue
            fs.on_timer(g)
            rows.append(fs.vector(names))
            t_rows.append(g)
            m_rows.append(bb + ba)

    for recv_ns, frame in iter_recording(path):
        if recv_ns < 0:
            bad_lines += 1
            continue
        try:
            events = parser.parse(frame, recv_ns)
        except FrameError:
            continue  # counted in parser.errors
        if not isinstance(events, list):
            continue  # control frame
        for ev in events:
            if isinstance(ev, BookUpdate):
                if ev.depth != depth:
                    continue
                decide_until(max(clock, ev.ts_ms))
                clock = max(clock, ev.ts_ms)
                book.apply(ev)
                if book.live:
                    fs.on_book(book, ev)
                    bb, ba = book.best_bid, book.best_ask
                    path_t.append(clock)
                    path_m.append(bb + ba if bb is not None and ba is not None else 0)
                    if first_book_ms is None:
                        first_book_ms = clock
                        next_dec = (clock // decision_ms + 1) * decision_ms
                    was_live = True
                elif was_live:
                    fs.reset_book()
                    was_live = False
            elif isinstance(ev, Trade):
                if ev.qty > 0 and not ev.block:
                    decide_until(max(clock, ev.ts_ms))
                    clock = max(clock, ev.ts_ms)
                fs.on_trade(ev)
            elif isinstance(ev, Kline):
                fs.on_kline(ev)
    if first_book_ms is None:
        raise RecordingError(f"recording {str(path)!r}: no orderbook.{depth}.{sym} data")
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))
    return Replay(
        source=str(path), names=names, t_ms=np.asarray(t_rows, dtype=np.int64), X=X,
        mid2=np.asarray(m_rows, dtype=np.int64), path_t_ms=np.asarray(path_t, dtype=np.int64),
        path_mid2=np.asarray(path_m, dtype=np.int64), bad_lines=bad_lines, frame_errors=dict(parser.errors),
    )


def default_warmup_s(params: FeatureParams) -> float:
    """Seconds after the first book before decisions are sampled: the longest time window."""
    return max(params.trade_window_s, params.ofi_window_s)


def label_adverse(
    path_t_ms: np.ndarray,
    path_mid2: np.ndarray,
    t_ms: np.ndarray,
    mid2: np.ndarray,
    label_ticks: int,
    horizon_ms: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adverse labels for decisions ``(t_ms, mid2)`` against the mid path (see module docstring).

    ``path_t_ms`` ascending; ``path_mid2`` entries of 0 (one-sided book) are ignored. Returns
    ``(y_bid, y_ask, valid)`` boolean arrays; ``valid`` is false when the path does not reach
    ``t + horizon``."""
    pt = np.asarray(path_t_ms, dtype=np.int64)
    pm = np.asarray(path_mid2, dtype=np.int64)
    t = np.asarray(t_ms, dtype=np.int64)
    m = np.asarray(mid2, dtype=np.int64)
    n = len(t)
    y_bid = np.zeros(n, dtype=bool)
    y_ask = np.zeros(n, dtype=bool)
    valid = np.zeros(n, dtype=bool)
    if n == 0 or len(pt) == 0:
        return y_bid, y_ask, valid
    end = int(pt[-1])
    lo = np.searchsorted(pt, t, side="right")
    hi = np.searchsorted(pt, t + horizon_ms, side="right")
    thr = 2 * label_ticks
    for i in range(n):
        if int(t[i]) + horizon_ms > end:
            continue
        valid[i] = True
        seg = pm[lo[i] : hi[i]]
        seg = seg[seg > 0]
        if len(seg):
            y_bid[i] = int(m[i]) - int(seg.min()) > thr
            y_ask[i] = int(seg.max()) - int(m[i]) > thr
    return y_bid, y_ask, valid


def build_dataset(
    paths: Sequence[str | Path],
    instrument: Instrument,
    names: Sequence[str],
    features: FeatureParams | None = None,
    *,
    label_ticks: int,
    horizon_s: float,
    depth: int = 50,
    decision_ms: int = 250,
    warmup_s: float | None = None,
) -> Dataset:
    """Replay and label each recording; concatenate the valid rows in time order."""
    if label_ticks < 1 or not (horizon_s > 0) or not math.isfinite(horizon_s):
        raise ValueError(f"label_ticks must be >= 1 and horizon_s > 0 (got {label_ticks}, {horizon_s})")
    h_ms = int(round(horizon_s * 1000))
    parts = []
    for p in paths:
        r = replay_features(p, instrument, names, features, depth=depth, decision_ms=decision_ms, warmup_s=warmup_s)
        yb, ya, ok = label_adverse(r.path_t_ms, r.path_mid2, r.t_ms, r.mid2, label_ticks, h_ms)
        parts.append((r.t_ms[ok], r.X[ok], yb[ok], ya[ok], r.source))
    t = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    X = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, len(names)))
    yb = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, bool)
    ya = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, bool)
    order = np.argsort(t, kind="stable")
    t, X, yb, ya = t[order], X[order], yb[order], ya[order]
    span = (int(t[0]), int(t[-1])) if len(t) else (0, 0)
    return Dataset(list(names), t, X, yb, ya, [p[4] for p in parts], span)
