"""A quoting environment on real market data: a recording replayed through the real
:class:`~daemon.core.book.OrderBook` and the queue-aware :class:`~daemon.execution.paper.PaperVenue`.

Pure and deterministic: the recording is parsed once (``orderbook.{depth}`` book updates and public
trades, in recorded order; frames that fail to parse are counted in :attr:`ReplayQuotingEnv.bad_frames`
and skipped). Time is the events' exchange ``ts_ms``.

Step protocol (gym-like, no dependency)::

    obs = env.reset(start_ms)                  # first decision at or after start_ms (book LIVE)
    obs, reward, done, info = env.step((delta_b, delta_a))   # price offsets from the mid (USDT)

At each decision the quote ``bid = floor((mid - delta_b)/tick)``, ``ask = ceil((mid + delta_a)/tick)``
(clamped to stay passive: ``bid < best ask``, ``ask > best bid``) with ``order_lots`` per side goes to
the venue; the events up to the next decision (``decision_ms`` later) are applied (book -> venue queue
update, trade -> venue fills). ``reward = dMtM - gamma_inv * q**2`` where MtM is cash plus position
marked at the mid (quote currency, maker fees included) and ``q`` the position in order-size units.

:class:`Observation` carries the quantities a :class:`~daemon.models.rl.QPolicy` bins: ``tau``
(fraction of the episode left), ``q`` (order-size units), ``sigma`` (realised mid volatility, price
per sqrt(second), from :class:`~daemon.models.spread_nn.SpreadFeatures`) and ``ofi`` (signed taker
volume fraction over the last 5 s, in [-1, 1]). :func:`run_policy` drives the env with a Q-policy
(greedy, or epsilon-greedy with tabular Q-learning updates of the visited (vol, ofi) cells, which the
simulator cannot train).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.core.book import OrderBook
from daemon.core.events import BookUpdate, Fill, Quote, Trade
from daemon.models.rl import action_scale
from daemon.models.spread_nn import FEATURES, SpreadFeatures
from daemon.execution.paper import PaperVenue

_I_RV = FEATURES.index("realized_vol_ticks")
_I_OFI = FEATURES.index("signed_volume_frac")


@dataclass
class Observation:
    ts_ms: int
    mid: float  # price units
    best_bid: float
    best_ask: float
    q: float  # order-size units
    sigma: float  # price / sqrt(s)
    ofi: float  # signed taker volume fraction, [-1, 1]
    tau: float  # fraction of the episode left


class ReplayQuotingEnv:
    """See module docstring. ``venue_kwargs`` go to :class:`PaperVenue` (its ``queue``, ``latency`` and ``fees`` models)."""

    def __init__(self, path: str | Path, symbol: str = "BTCUSDT", depth: int = 50, decision_ms: int = 1000,
                 order_lots: int = 1, gamma_inv: float = 0.0, sigma_floor: float = 1e-6, **venue_kwargs) -> None:
        from daemon.bybit.messages import FrameError, FrameParser
        from daemon.recording import load_instruments, read_frames

        if decision_ms < 1 or order_lots < 1:
            raise ValueError("decision_ms and order_lots must be >= 1")
        self.instrument = load_instruments([path], [symbol])[symbol]
        self.symbol, self.depth, self.decision_ms, self.order_lots = symbol, depth, decision_ms, order_lots
        self.gamma_inv, self.sigma_floor = gamma_inv, sigma_floor
        self.venue_kwargs = venue_kwargs
        self.tick = self.instrument.price.to_float(1)
        parser = FrameParser({symbol: self.instrument})
        self.events: list = []
        self.bad_frames = 0
        for recv_ns, raw in read_frames([path]):
            try:
                out = parser.parse(raw, recv_ns)
            except FrameError:
                self.bad_frames += 1
                continue
            if isinstance(out, list):
                self.events.extend(e for e in out if (isinstance(e, BookUpdate) and e.depth == depth)
                                   or isinstance(e, Trade))
        if not self.events:
            raise ValueError(f"recording {str(path)!r}: no orderbook.{depth} / publicTrade events")
        self.ts = np.array([e.ts_ms for e in self.events], dtype=np.int64)
        self.start_ms, self.end_ms = int(self.ts.min()), int(self.ts.max())

    # ------------------------------------------------------------------------------------------
    def reset(self, start_ms: int | None = None, end_ms: int | None = None) -> Observation:
        """Start an episode: fresh book, venue, features and PnL; replays from the beginning of the
        recording (to build the book and features) and stops at the first decision time at or after
        ``start_ms`` with a LIVE book. The episode ends at ``end_ms`` (default: end of data)."""
        self.book = OrderBook(self.symbol, self.depth)
        self.book.request_sync("replay")
        self.venue = PaperVenue(self.instrument, **self.venue_kwargs)
        self.features = SpreadFeatures()
        self.cash = 0.0
        #: the episode's account: net position in lots (the venue reports fills, holds no position)
        self.position_lots = 0
        self.fills: list[Fill] = []
        self.i = 0
        self.ep_start = self.start_ms if start_ms is None else int(start_ms)
        self.ep_end = self.end_ms if end_ms is None else min(int(end_ms), self.end_ms)
        if self.ep_end <= self.ep_start:
            raise ValueError("episode end must be after its start")
        t = self.ep_start + (-self.ep_start) % self.decision_ms  # first grid time >= start
        self._run_until(t)
        while not self._ready() and t < self.ep_end:
            t += self.decision_ms
            self._run_until(t)
        if not self._ready():
            raise ValueError("the book never became LIVE before the episode end")
        self.t = t
        self.ep_start = t
        self.mtm = self._mtm()
        return self._obs()

    def _ready(self) -> bool:
        return self.book.live and self.book.best_bid is not None and self.book.best_ask is not None

    def _run_until(self, t_ms: int) -> None:
        """Apply every event with ``ts_ms <= t_ms`` (in recorded order)."""
        ev, venue, book, feats = self.events, self.venue, self.book, self.features
        n = len(ev)
        while self.i < n and ev[self.i].ts_ms <= t_ms:
            e = ev[self.i]
            self.i += 1
            if isinstance(e, BookUpdate):
                book.apply(e)
                self._book_records(venue.on_book(book))
                feats.on_book(book)
            else:
                self._book_records(venue.on_trade(e, book))
                feats.on_trade(e)

    def _book_records(self, recs: list) -> None:
        px, qty = self.instrument.price.to_float, self.instrument.qty.to_float
        for r in recs:
            if isinstance(r, Fill):
                self.fills.append(r)
                self.position_lots += r.side * r.qty
                self.cash -= r.side * px(r.price) * qty(r.qty) + r.fee

    def _mid(self) -> float:
        px = self.instrument.price.to_float
        return 0.5 * (px(self.book.best_bid) + px(self.book.best_ask))

    def _mtm(self) -> float:
        return self.cash + self.instrument.qty.to_float(self.position_lots) * self._mid()

    @property
    def q(self) -> float:
        return self.position_lots / self.order_lots

    def _obs(self) -> Observation:
        v = self.features.vector(self.t)
        sigma = max(self.sigma_floor, float(v[_I_RV]) * self.tick) if v is not None else self.sigma_floor
        ofi = float(v[_I_OFI]) if v is not None else 0.0
        tau = max(0.0, (self.ep_end - self.t) / (self.ep_end - self.ep_start))
        px = self.instrument.price.to_float
        return Observation(self.t, self._mid(), px(self.book.best_bid), px(self.book.best_ask), self.q, sigma, ofi, tau)

    # ------------------------------------------------------------------------------------------
    def step(self, deltas: tuple[float | None, float | None]):
        """Quote ``(delta_b, delta_a)`` (price offsets from the mid; ``None`` = side not quoted)
        until the next decision. Returns ``(obs, reward, done, info)``."""
        db, da = deltas
        book = self.book
        if self._ready():
            mid = self._mid()
            pg = self.instrument.price
            bid = None if db is None or not math.isfinite(db) else min(pg.from_float_floor(mid - db), book.best_ask - 1)
            ask = None if da is None or not math.isfinite(da) else max(pg.from_float_ceil(mid + da), book.best_bid + 1)
            quote = Quote(self.symbol, bid, self.order_lots if bid is not None else 0,
                          ask, self.order_lots if ask is not None else 0, self.t)
            self._book_records(self.venue.on_quote(quote, book))
        else:  # no quotes outside LIVE
            self._book_records(self.venue.cancel_all(self.t, "book not live", book))
        n_fills = len(self.fills)
        self.t += self.decision_ms
        self._run_until(self.t)
        done = self.t >= self.ep_end or self.i >= len(self.events)
        if not self._ready():
            return self._obs_safe(), 0.0, done, {"fills": 0, "live": False}
        mtm = self._mtm()
        q = self.q
        reward = (mtm - self.mtm) - self.gamma_inv * q * q
        self.mtm = mtm
        return self._obs(), reward, done, {"fills": len(self.fills) - n_fills, "live": True, "mtm": mtm}

    def _obs_safe(self) -> Observation:
        return Observation(self.t, float("nan"), float("nan"), float("nan"), self.q, self.sigma_floor, 0.0,
                           max(0.0, (self.ep_end - self.t) / (self.ep_end - self.ep_start)))


def run_policy(env: ReplayQuotingEnv, policy, gamma: float, kappa: float, horizon_s: float, *,
               start_ms: int | None = None, end_ms: int | None = None, sigma_ref: float | None = None,
               epsilon: float = 0.0, learn_rate: float = 0.0, seed: int = 0) -> dict:
    """One episode with a :class:`~daemon.models.rl.QPolicy`: offsets ``(h +/- psi*q) * u`` with
    ``u = action_scale(gamma, obs.sigma, kappa, horizon_s)`` (price units, ``kappa`` per price unit).
    ``epsilon > 0`` explores; ``learn_rate > 0`` applies one-step Q-learning updates to the policy's
    table (all four state dimensions, so volatility and OFI cells get trained here). Returns a
    summary: final PnL (MtM, quote currency), fills, final q, summed reward."""
    rng = np.random.default_rng(seed)
    obs = env.reset(start_ms, end_ms)
    total_r = 0.0
    done = False
    Q, N = policy.q_table, policy.visits

    def state(o: Observation):
        vr = 1.0 if not sigma_ref else o.sigma / sigma_ref
        return (int(policy.time_bin(o.tau)), int(policy.q_bin(o.q)), int(policy.vol_bin(vr)), int(policy.ofi_bin(o.ofi)))

    s = state(obs)
    while not done:
        greedy = int(policy.greedy(*s))
        a = int(rng.integers(0, policy.n_actions)) if rng.random() < epsilon else greedy
        u = action_scale(gamma, obs.sigma, kappa, horizon_s)
        db, da = policy.deltas_for(a, u, obs.q)
        obs, r, done, info = env.step((float(db), float(da)))
        total_r += r
        if not info.get("live", True):
            continue
        s2 = state(obs)
        if learn_rate > 0:
            target = r + (0.0 if done else float(np.max(Q[s2])))
            Q[s + (a,)] += learn_rate * (target - Q[s + (a,)])
            N[s + (a,)] += 1
        s = s2
    return {"pnl": env.mtm, "fills": len(env.fills), "final_q": env.q, "reward": total_r,
            "bad_frames": env.bad_frames}
