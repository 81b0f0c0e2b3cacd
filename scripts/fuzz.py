#!/usr/bin/env python3
"""Fuzz the untrusted-input path for a fixed time: ``FrameParser.parse`` (C scanner and msgspec path)
and the C order book against its Python reference. Meant to run on a sanitizer build
(``scripts/fuzz.sh`` builds one: AddressSanitizer + UndefinedBehaviorSanitizer, which abort the
process on a memory error or undefined behaviour), but runs on any install.

Inputs: every frame of the bundled recording and of the shared Bybit samples (``--samples DIR``),
mutated (byte flips, inserts of hostile bytes and numbers, truncation, splicing two frames, deep
nesting, 18-20 digit integers, sizes at the 2**62 grid limit), seeded (``--seed``). Checks:

* ``parse`` returns events or a ``Control``, or raises ``FrameError``; nothing else (the contract);
* the C scanner and the pure-Python path agree on every input (same events, or the same error kind);
* the C book and ``PyOrderBook`` agree on every field after every update of random streams, huge
  sizes and deltas above the batch threshold included.

Prints one line of counts; exits 1 on the first disagreement (with the input), 0 otherwise.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from pathlib import Path

from daemon.bybit.messages import Control, FrameError, FrameParser
from daemon.core.book import PyOrderBook, fastbook
from daemon.core.events import BookUpdate
from daemon.recording import bundled_recording, load_instruments

HOSTILE = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"[" * 40, b"{" * 40, b"]", b"}", b'"', b"\\",
           b"9223372036854775808", b"99999999999999999999", b"1e308", b"-0", b"4611686018427387.903",
           b"0.0000000000000000001", b'"u":', b'"seq":', b",", b":", b"null", b"true", b" " * 7]


def corpus(samples: Path | None) -> list[bytes]:
    out = []
    with gzip.open(bundled_recording(), "rb") as f:
        for line in f:
            out.append(line.rstrip(b"\n").split(b" ", 1)[1])
    if samples is not None and samples.is_dir():
        for p in sorted(samples.glob("ws_*.json")):
            try:
                out.append(json.dumps(json.loads(p.read_text())).encode())
            except ValueError:
                continue
    return out


def mutate(rnd: random.Random, frames: list[bytes]) -> bytes:
    b = bytearray(rnd.choice(frames))
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rnd.randrange(256)
        elif op == 1:
            b[i:i] = rnd.choice(HOSTILE)
        elif op == 2:
            del b[i:i + rnd.randint(1, 16)]
        elif op == 3:
            b = b[:i]
        elif op == 4:
            other = rnd.choice(frames)
            b = b[:i] + other[rnd.randrange(len(other) + 1):]
        elif op == 5:  # replace a number with a hostile one
            j = b.find(b":", i)
            if j > 0:
                k = j + 1
                while k < len(b) and b[k:k + 1].isdigit():
                    k += 1
                b[j + 1:k] = rnd.choice(HOSTILE[10:15])
        else:
            b[i:i] = b"[" * rnd.randint(30, 3000)
    return bytes(b)


def outcome(p: FrameParser, raw: bytes):
    try:
        out = p.parse(raw, 1)
    except FrameError as e:
        return ("error", e.kind)
    assert type(out) is list or isinstance(out, Control), type(out)
    return ("ok", repr(out))


def book_state(b) -> tuple:
    return (int(b.state), b.last_u, b.best_bid, b.best_ask, b.bid_levels(), b.ask_levels(),
            [b.top_depth(k) for k in (0, 1, 5, 1000)], [b.top_of_book(k) for k in (1, 5)])


def book_round(rnd: random.Random) -> int:
    depth = rnd.choice([1, 5, 50])
    c, py = fastbook.OrderBook("X", depth), PyOrderBook("X", depth)
    u = 0
    n = 0
    big = (1 << 62) - 1
    for _ in range(rnd.randint(1, 30)):
        u = u + 1 if rnd.random() < 0.9 else rnd.randint(0, u + 3)
        nlev = rnd.choice([0, 1, 3, 8, 70, 300])
        lev = lambda: [(rnd.randint(1, 400), rnd.choice([0, 1, 7, big, rnd.randint(0, 10**6)])) for _ in range(nlev)]  # noqa: E731
        ev = BookUpdate("X", depth, rnd.random() < 0.15, lev(), lev(), u, rnd.choice([0, u, u + 1000]), u, u, u)
        ra, rb = c.apply(ev), py.apply(ev)
        if int(ra) != int(rb) or book_state(c) != book_state(py):
            raise AssertionError(f"C and Python books disagree after {ev!r}")
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bybit-v5" / "samples")
    args = ap.parse_args()
    if fastbook is None:
        print("fuzz: the C extension is not built (or MMD_PURE_PYTHON is set): nothing to compare", file=sys.stderr)
        return 1
    rnd = random.Random(args.seed)
    frames = corpus(args.samples)
    inst = load_instruments([bundled_recording()], ["BTCUSDT"])
    fast, ref = FrameParser(inst), FrameParser(inst)
    ref._scanner = ref._scan = None
    t_end = time.monotonic() + args.seconds
    inputs = updates = accepted = 0
    while time.monotonic() < t_end:
        for _ in range(200):
            raw = mutate(rnd, frames)
            a, b = outcome(fast, raw), outcome(ref, raw)
            if a != b:
                print(f"fuzz: C scanner and msgspec path disagree on {raw[:300]!r}: {a} vs {b}", file=sys.stderr)
                return 1
            inputs += 1
            accepted += a[0] == "ok"
        updates += book_round(rnd)
    print(f"fuzz: {inputs:,} frames ({accepted:,} accepted), {updates:,} book updates compared, "
          f"{args.seconds:.0f} s, seed {args.seed}, C from {fastbook.__file__}: no disagreement, "
          "no exception but FrameError")
    return 0


if __name__ == "__main__":
    sys.exit(main())
