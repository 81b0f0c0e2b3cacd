"""Load a recording in the ``<recv_ns> <frame json>`` line format (gzip or plain text).

One line per websocket data frame as it arrived from Bybit: ``recv_ns`` is the local receive time
(ns since the epoch), the rest is the frame JSON exactly as received. Frames are kept as parsed
dicts (orjson, ~40k lines in well under a second) and are never mutated: the replay builds new
dicts for every frame it sends, so a recording can be replayed any number of times (looping).

The replay sends trades as Bybit does, one ``publicTrade`` frame per match-engine timestamp
(:func:`batch_trades`): a recording that splits them one trade per frame gets its same-``T`` frames
joined; a recording that already batches them (any frame with several trades) is sent as recorded.

Bad lines (no space, bad integer, invalid JSON, non-object JSON, no ``topic``) raise
:class:`RecordingError` with the line number unless ``skip_bad=True``, in which case they are counted
in :attr:`Recording.bad_lines` and skipped.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import orjson

BUNDLED_NAME = "linear_BTCUSDT_2024-08-08_5min.bybit.gz"


class RecordingError(ValueError):
    """A recording that cannot be replayed (bad line, or no frames at all)."""


def bundled_recording_path() -> Path:
    """Path of the bundled 345 s BTCUSDT recording shipped in ``daemon/data``."""
    res = files("daemon") / "data" / BUNDLED_NAME
    with as_file(res) as p:  # a real file for a normal (non-zip) install
        return Path(p)


@dataclass(slots=True)
class Recording:
    """Parsed frames in file order: ``frames[i] = (recv_ns, frame_dict)``."""

    frames: list[tuple[int, dict[str, Any]]]
    path: str = ""
    bad_lines: int = 0
    symbols: list[str] = field(default_factory=list)
    #: native book depths per symbol found in the file, e.g. {"BTCUSDT": [1, 50]}
    book_depths: dict[str, list[int]] = field(default_factory=dict)
    first_ts: int = 0  #: smallest frame ``ts`` (ms)
    last_ts: int = 0  #: largest frame ``ts`` (ms)
    min_seq: int = 0
    max_seq: int = 0
    #: book deltas whose recorded ``u`` is not last_u + 1 (a recording hole; the replay renumbers ``u``,
    #: so such holes are NOT visible on the wire: both books simply apply the same frames)
    u_gaps: int = 0

    @property
    def span_ns(self) -> int:
        """Local receive-time span of the recording (ns)."""
        return self.frames[-1][0] - self.frames[0][0] if self.frames else 0

    @property
    def span_ms(self) -> int:
        """Exchange-time span of the recording (ms)."""
        return self.last_ts - self.first_ts


def _frame_seq(frame: dict[str, Any]) -> int | None:
    data = frame.get("data")
    if isinstance(data, dict):
        s = data.get("seq")
        return s if isinstance(s, int) else None
    if isinstance(data, list) and data and isinstance(data[-1], dict):
        s = data[-1].get("seq")
        return s if isinstance(s, int) else None
    return None


def parse_lines(lines: list[bytes], path: str = "", skip_bad: bool = False) -> Recording:
    """Parse raw ``<recv_ns> <json>`` lines into a :class:`Recording`."""
    frames: list[tuple[int, dict[str, Any]]] = []
    bad = 0
    symbols: dict[str, None] = {}
    depths: dict[str, set[int]] = {}
    first_ts = last_ts = 0
    min_seq = max_seq = 0
    have_ts = have_seq = False
    last_u: dict[str, int] = {}
    u_gaps = 0
    loads = orjson.loads
    for lineno, raw in enumerate(lines, 1):
        raw = raw.strip()
        if not raw:
            continue
        sp = raw.find(b" ")
        try:
            if sp <= 0:
                raise ValueError("expected '<recv_ns> <frame json>'")
            ns = int(raw[:sp])
            frame = loads(raw[sp + 1 :])
            if not isinstance(frame, dict) or not isinstance(frame.get("topic"), str):
                raise ValueError("frame is not a JSON object with a 'topic'")
        except (ValueError, orjson.JSONDecodeError) as exc:
            if skip_bad:
                bad += 1
                continue
            raise RecordingError(f"{path or '<lines>'}:{lineno}: {exc}") from None
        topic: str = frame["topic"]
        parts = topic.split(".")
        sym = parts[-1]
        symbols.setdefault(sym, None)
        if parts[0] == "orderbook" and len(parts) == 3 and parts[1].isdigit():
            depths.setdefault(sym, set()).add(int(parts[1]))
            data = frame.get("data")
            u = data.get("u") if isinstance(data, dict) else None
            if isinstance(u, int):
                prev = last_u.get(topic)
                if frame.get("type") == "delta" and prev is not None and u != prev + 1 and u != 1 \
                        and parts[1] != "1":
                    u_gaps += 1
                last_u[topic] = u
        ts = frame.get("ts")
        if isinstance(ts, int):
            if not have_ts:
                first_ts = last_ts = ts
                have_ts = True
            first_ts = min(first_ts, ts)
            last_ts = max(last_ts, ts)
        seq = _frame_seq(frame)
        if seq is not None:
            if not have_seq:
                min_seq = max_seq = seq
                have_seq = True
            min_seq = min(min_seq, seq)
            max_seq = max(max_seq, seq)
        frames.append((ns, frame))
    if not frames:
        raise RecordingError(f"{path or '<lines>'}: no frames")
    return Recording(
        frames=frames,
        path=path,
        bad_lines=bad,
        symbols=list(symbols),
        book_depths={s: sorted(d) for s, d in depths.items()},
        first_ts=first_ts,
        last_ts=last_ts,
        min_seq=min_seq,
        max_seq=max_seq,
        u_gaps=u_gaps,
    )


def load_recording(path: str | Path | None = None, skip_bad: bool = False) -> Recording:
    """Load ``path`` (``.gz`` or plain); ``None`` loads the bundled BTCUSDT recording."""
    p = Path(path) if path is not None else bundled_recording_path()
    with open(p, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(p, "rb") as fh:
        data = fh.read()
    return parse_lines(data.split(b"\n"), path=str(p), skip_bad=skip_bad)


#: Bybit puts at most this many fills in one ``publicTrade`` message (PROTOCOL.md section 3)
MAX_TRADES_PER_FRAME = 1024


def _trades(frame: dict[str, Any]) -> list | None:
    data = frame.get("data")
    if frame["topic"].startswith("publicTrade.") and isinstance(data, list) and data \
            and all(isinstance(t, dict) and "T" in t for t in data):
        return data
    return None


def batch_trades(frames: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """The frames to replay: trades grouped one ``publicTrade`` frame per match-engine timestamp.

    Bybit sends the fills of one timestamp in one message (several fills share ``T``), while a
    recording re-expressed from another venue may carry one trade per frame. If any trade frame of
    ``frames`` holds several trades, the recording already has Bybit's batching: it is returned as
    is. Otherwise each trade frame joins the previous trade frame of its topic when both have the
    same ``T`` (other topics' frames in between are passed over; the joined frame goes out where its
    first trade was, with the largest ``ts``), up to :data:`MAX_TRADES_PER_FRAME` fills. Input frames
    are not mutated."""
    if any(len(t) > 1 for _, f in frames if (t := _trades(f)) is not None):
        return frames
    out: list[tuple[int, dict[str, Any]]] = []
    open_batch: dict[str, int] = {}  #: topic -> index in out of its last trade frame
    for ns, f in frames:
        trades = _trades(f)
        if trades is None:
            out.append((ns, f))
            continue
        i = open_batch.get(f["topic"])
        if i is not None:
            prev = out[i][1]
            if prev["data"][-1]["T"] == trades[0]["T"] and len(prev["data"]) < MAX_TRADES_PER_FRAME:
                joined = dict(prev)
                joined["data"] = prev["data"] + trades
                joined["ts"] = max(prev.get("ts", 0), f.get("ts", 0))
                out[i] = (out[i][0], joined)
                continue
        open_batch[f["topic"]] = len(out)
        out.append((ns, f))
    return out
