"""Batch reference for the incremental features, written independently of ``daemon.features``.

Given the full list of events fed to a :class:`FeatureState` (book updates with their naive-book
top of book, trades, timers) this module recomputes every feature *from scratch* at a checkpoint
(the state after event ``i``) with plain numpy / python: no running sums, no ring buffers, its own
naive order book (dicts + ``sorted``). Shared with the other ``test_features_*`` modules; it holds
no tests itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from daemon.core.events import BookUpdate, Trade


class NaiveBook:
    """The simplest correct depth-N book: two dicts, sorted on every read."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def apply(self, ev: BookUpdate) -> None:
        if ev.snapshot or ev.u == 1:
            self.bids = {p: s for p, s in ev.bids if s > 0}
            self.asks = {p: s for p, s in ev.asks if s > 0}
        else:
            for side, ch in ((self.bids, ev.bids), (self.asks, ev.asks)):
                for p, s in ch:
                    if s == 0:
                        side.pop(p, None)
                    else:
                        side[p] = s
        b = sorted(self.bids.items(), reverse=True)[: self.depth]
        a = sorted(self.asks.items())[: self.depth]
        self.bids, self.asks = dict(b), dict(a)

    def top(self, k: int):
        b = sorted(self.bids.items(), reverse=True)
        a = sorted(self.asks.items())
        bb, qb = b[0] if b else (None, 0)
        ba, qa = a[0] if a else (None, 0)
        return bb, qb, ba, qa, sum(s for _, s in b[:k]), sum(s for _, s in a[:k])


@dataclass
class Tape:
    """Column view of an event list. Index = event number (book, trade or timer)."""

    kind: list = field(default_factory=list)  # "book" | "trade" | "timer"
    ts: list = field(default_factory=list)
    # book columns (None when not a book event)
    bb: list = field(default_factory=list)
    qb: list = field(default_factory=list)
    ba: list = field(default_factory=list)
    qa: list = field(default_factory=list)
    vbk: list = field(default_factory=list)
    vak: list = field(default_factory=list)
    resub: list = field(default_factory=list)  # snapshot of a depth > 1 book
    # trade columns
    px: list = field(default_factory=list)
    qty: list = field(default_factory=list)
    side: list = field(default_factory=list)
    ok: list = field(default_factory=list)  # a usable (valid, non-block) trade

    def clock(self) -> np.ndarray:
        """Running max of the time stamps; rejected and block trades do not move the clock."""
        ts = [t if (k != "trade" or ok) else -(1 << 62) for t, k, ok in zip(self.ts, self.kind, self.ok)]
        return np.maximum.accumulate(np.asarray(ts, dtype=np.int64))


def build_tape(events, depth: int, top_k: int) -> Tape:
    """``events``: list of ``BookUpdate`` (already known to leave the book LIVE), ``Trade`` or
    ``("timer", ts_ms)``."""
    t = Tape()
    nb = NaiveBook(depth)
    for ev in events:
        if isinstance(ev, BookUpdate):
            nb.apply(ev)
            bb, qb, ba, qa, vb, va = nb.top(top_k)
            t.kind.append("book"); t.ts.append(ev.ts_ms)
            t.bb.append(bb); t.qb.append(qb); t.ba.append(ba); t.qa.append(qa)
            t.vbk.append(vb); t.vak.append(va); t.resub.append(ev.snapshot and ev.depth > 1)
            t.px.append(0); t.qty.append(0); t.side.append(0); t.ok.append(False)
        elif isinstance(ev, Trade):
            valid = ev.qty > 0 and ev.price > 0 and ev.side in (1, -1) and not ev.block
            t.kind.append("trade"); t.ts.append(ev.ts_ms)
            t.bb.append(None); t.qb.append(0); t.ba.append(None); t.qa.append(0)
            t.vbk.append(0); t.vak.append(0); t.resub.append(False)
            t.px.append(ev.price); t.qty.append(ev.qty); t.side.append(ev.side); t.ok.append(valid)
        else:
            _, ts = ev
            t.kind.append("timer"); t.ts.append(ts)
            t.bb.append(None); t.qb.append(0); t.ba.append(None); t.qa.append(0)
            t.vbk.append(0); t.vak.append(0); t.resub.append(False)
            t.px.append(0); t.qty.append(0); t.side.append(0); t.ok.append(False)
    return t


# ---------------------------------------------------------------------------------------------
# reference features at checkpoint i (state after event i)
# ---------------------------------------------------------------------------------------------


def columns(t: Tape) -> dict[str, np.ndarray]:
    """numpy columns of the tape (book prices None -> -1)."""
    return {
        "book": np.array([k == "book" for k in t.kind]),
        "clock": t.clock(),
        "bb": np.array([-1 if x is None else x for x in t.bb], dtype=np.int64),
        "ba": np.array([-1 if x is None else x for x in t.ba], dtype=np.int64),
        "qb": np.array(t.qb, dtype=np.int64),
        "qa": np.array(t.qa, dtype=np.int64),
        "vbk": np.array(t.vbk, dtype=np.int64),
        "vak": np.array(t.vak, dtype=np.int64),
        "resub": np.array(t.resub),
        "ok": np.array(t.ok),
        "qty": np.array(t.qty, dtype=np.int64),
        "side": np.array(t.side, dtype=np.int64),
        "px": np.array(t.px, dtype=np.int64),
    }


def ref_features(t: Tape, i: int, cfg, tick: float, lot: float, cols=None) -> dict[str, float]:
    c = cols if cols is not None else columns(t)
    clock = c["clock"][: i + 1]
    now = int(clock[-1])
    # values before any book (the incremental state's documented defaults)
    out: dict[str, float] = dict.fromkeys(
        ["imbalance_top", "imbalance_k", "depth_ratio", "bid_depth_k", "ask_depth_k", "wmid_lean_ticks", "spread_z"], 0.0
    )
    books = np.flatnonzero(c["book"][: i + 1])
    # -- book snapshot features: the last book event
    if len(books):
        j = books[-1]
        qb, qa, vb, va = int(c["qb"][j]), int(c["qa"][j]), int(c["vbk"][j]), int(c["vak"][j])
        out["imbalance_top"] = (qb - qa) / (qb + qa) if qb + qa else 0.0
        out["imbalance_k"] = (vb - va) / (vb + va) if vb + va else 0.0
        out["depth_ratio"] = (qb + qa) / (vb + va) if vb + va else 0.0
        out["bid_depth_k"] = vb * lot
        out["ask_depth_k"] = va * lot
    two = books[(c["bb"][books] >= 0) & (c["ba"][books] >= 0)]
    if len(two):
        j = two[-1]
        bb, ba, Vb, Va = int(c["bb"][j]), int(c["ba"][j]), int(c["qb"][j]), int(c["qa"][j])
        Pb, Pa = bb * tick, ba * tick
        mid = (Pb + Pa) / 2
        out["mid"] = mid
        out["weighted_mid"] = (Va * Pb + Vb * Pa) / (Vb + Va)
        # exact rational arithmetic in ticks, then one rounding
        out["wmid_lean_ticks"] = float(Fraction(Va * bb + Vb * ba, Vb + Va) - Fraction(bb + ba, 2))
        out["spread_ticks"] = float(ba - bb)
        out["spread_bps"] = (Pa - Pb) / mid * 1e4
    # -- OFI and queue pressure: e_n per book event vs the previous book event (weak inequalities)
    W = round(cfg.ofi_window_s * 1000)
    cur, prev = books[1:], books[:-1]
    use = ~c["resub"][cur] & (clock[cur] > now - W)
    cur, prev = cur[use], prev[use]
    bb1, bb0, qb1, qb0 = c["bb"][cur], c["bb"][prev], c["qb"][cur], c["qb"][prev]
    ba1, ba0, qa1, qa0 = c["ba"][cur], c["ba"][prev], c["qa"][cur], c["qa"][prev]
    bid_ok = (bb1 >= 0) & (bb0 >= 0)
    ask_ok = (ba1 >= 0) & (ba0 >= 0)
    e = np.where(bid_ok, np.where(bb1 >= bb0, qb1, 0) - np.where(bb1 <= bb0, qb0, 0), 0)
    e = e + np.where(ask_ok, -np.where(ba1 <= ba0, qa1, 0) + np.where(ba1 >= ba0, qa0, 0), 0)
    dqb = np.where(bid_ok & (bb1 == bb0), qb1 - qb0, 0)
    dqa = np.where(ask_ok & (ba1 == ba0), qa1 - qa0, 0)
    out["ofi"] = int(e.sum()) * lot
    out["queue_pressure_bid"] = int(dqb.sum()) * lot / cfg.ofi_window_s
    out["queue_pressure_ask"] = int(dqa.sum()) * lot / cfg.ofi_window_s
    out["queue_pressure"] = int(dqb.sum() - dqa.sum()) * lot / cfg.ofi_window_s
    # -- trade flow
    tr = np.flatnonzero(c["ok"][: i + 1])
    qty = c["qty"][tr]
    sgn = c["side"][tr]
    out["cum_delta"] = int((qty * sgn).sum()) * lot
    Wt = round(cfg.trade_window_s * 1000)
    inw = clock[tr] > now - Wt
    n_in = int(inw.sum())
    out["volume"] = int(qty[inw].sum()) * lot
    out["delta_window"] = int((qty[inw] * sgn[inw]).sum()) * lot
    out["trade_rate"] = n_in / cfg.trade_window_s
    out["avg_trade_size"] = int(qty[inw].sum()) * lot / n_in if n_in else 0.0
    # -- VPIN
    out["vpin"] = ref_vpin(
        clock[tr].tolist(), c["px"][tr].tolist(), qty.tolist(), now,
        bar_ms=round(cfg.vpin_bar_s * 1000), n=cfg.vpin_buckets,
        bucket_lots=round(cfg.vpin_bucket_volume / lot) if cfg.vpin_bucket_volume > 0 else 0,
        sigma_bars=cfg.vpin_sigma_bars, derive_ms=round(cfg.vpin_derive_s * 1000),
    )
    # -- sampled mid (realized vol) and spread distribution (z-score)
    rv = ref_sampled(c, i, cfg)
    samples = rv.pop("_spread_samples")
    last_mid = rv.pop("_last_sample_mid", None)
    out.update(rv)
    if last_mid is not None and "realized_vol_per_s" in rv:
        out["sigma_price_per_s"] = last_mid * tick / 2 * rv["realized_vol_per_s"]
    if len(two):
        sp = out["spread_ticks"]
        last = np.asarray(samples[-cfg.spread_window:], dtype=float)
        if len(last) >= 2 and last.std(ddof=1) > 0:
            out["spread_z"] = (sp - last.mean()) / last.std(ddof=1)
        else:
            out["spread_z"] = 0.0
    return out


def ref_sampled(c: dict, i: int, cfg) -> dict:
    """Mid samples on the grid ``k * step``: from the first grid point after the first two-sided
    book, every grid point strictly before the current clock; value = the state after the last
    event whose clock is <= the grid point."""
    step = round(cfg.vol_sample_s * 1000)
    clock = c["clock"][: i + 1]
    now = int(clock[-1])
    two = c["book"][: i + 1] & (c["bb"][: i + 1] >= 0) & (c["ba"][: i + 1] >= 0)
    res: dict = {"_spread_samples": []}
    if not two.any():
        return res
    first = int(np.flatnonzero(two)[0])
    # forward-fill bid + ask and ask - bid of the last two-sided book
    last_two = np.maximum.accumulate(np.where(two, np.arange(i + 1), -1))
    mid2 = (c["bb"] + c["ba"])[: i + 1][last_two]
    spread = (c["ba"] - c["bb"])[: i + 1][last_two]
    g0 = (int(clock[first]) // step + 1) * step
    grid = np.arange(g0, now, step, dtype=np.int64)
    idx = np.searchsorted(clock, grid, side="right") - 1
    m = mid2[idx].astype(float)
    res["_spread_samples"] = spread[idx].tolist()
    if len(m):
        res["_last_sample_mid"] = float(m[-1])
    r = np.log(m[1:] / m[:-1]) if len(m) > 1 else np.zeros(0)
    last = r[-cfg.vol_window:]
    if len(last) >= 2:
        sd = float(np.std(last, ddof=1))
        res["realized_vol"] = sd
        res["realized_vol_per_s"] = sd / math.sqrt(cfg.vol_sample_s)
    if len(r):
        lam = 0.5 ** (cfg.vol_sample_s / cfg.vol_ewma_halflife_s)
        k = len(r)
        # closed form: v_k = lam^(k-1) r_1^2 + (1 - lam) sum_{i=2..k} lam^(k-i) r_i^2
        wts = (1 - lam) * lam ** np.arange(k - 2, -1, -1, dtype=float)
        v = lam ** (k - 1) * r[0] ** 2 + float(np.dot(wts, r[1:] ** 2))
        res["ewma_vol"] = math.sqrt(v)
        res["ewma_vol_per_s"] = math.sqrt(v) / math.sqrt(cfg.vol_sample_s)
    return res


def ref_vpin(ts, px, qty, now, *, bar_ms, n, bucket_lots, sigma_bars, derive_ms) -> float:
    """BVC-VPIN from scratch (see daemon/features/vpin.py docstring for the conventions)."""
    from statistics import NormalDist

    Z = NormalDist().cdf
    bars: dict[int, list] = {}
    for tt, p, q in zip(ts, px, qty):
        k = tt // bar_ms
        if k not in bars:
            bars[k] = [p, p, 0]  # open, close, vol
        bars[k][1] = p
        bars[k][2] += q
    closed = [k for k in sorted(bars) if (k + 1) * bar_ms <= now]
    dps, zs, vols, ends = [], [], [], []
    prev_close = None
    for k in closed:
        o, c, v = bars[k]
        dp = c - (prev_close if prev_close is not None else o)
        prev_close = c
        dps.append(dp)
        win = np.asarray(dps[-sigma_bars:], dtype=float)
        sd = float(np.std(win, ddof=1)) if len(win) >= 2 else 0.0
        if sd > 0:
            z = Z(dp / sd)
        else:
            z = 0.5 if dp == 0 else (1.0 if dp > 0 else 0.0)
        zs.append(z)
        vols.append(v)
        ends.append((k + 1) * bar_ms)
    if bucket_lots == 0:
        if not closed:
            return math.nan
        start = closed[0] * bar_ms
        m = next((i for i, e in enumerate(ends) if e - start >= derive_ms), None)
        if m is None:
            return math.nan
        bucket_lots = max(1, round(sum(vols[: m + 1]) / n))
    # explode bars into lots-weighted pieces, cut at bucket boundaries
    ois = []
    fill, acc = 0, 0.0
    for v, z in zip(vols, zs):
        while v > 0:
            part = min(v, bucket_lots - fill)
            acc += part * (1 - z) - part * z
            fill += part
            v -= part
            if fill == bucket_lots:
                ois.append(abs(acc))
                fill, acc = 0, 0.0
    if not ois:
        return math.nan
    last = ois[-n:]
    return math.fsum(last) / (len(last) * bucket_lots)


def compare(inc: dict[str, float], ref: dict[str, float], names=None, rtol=1e-9, atol=1e-12) -> list[str]:
    """Names whose incremental and reference values differ (NaN == NaN; missing ref == NaN)."""
    bad = []
    for k in names or ref:
        a = inc[k]
        b = ref.get(k, math.nan)
        if isinstance(b, float) and math.isnan(b) and math.isnan(a):
            continue
        if math.isnan(a) != (isinstance(b, float) and math.isnan(b)):
            bad.append(f"{k}: inc={a!r} ref={b!r}")
            continue
        if not math.isclose(a, b, rel_tol=rtol, abs_tol=atol):
            bad.append(f"{k}: inc={a!r} ref={b!r}")
    return bad
