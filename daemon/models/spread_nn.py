"""Neural spread predictor (the seed chapter's "Neural Network Spread Predictor"): the per-tick part.

Network (seed chapter, numpy, hand-written forward/backward)::

    h1 = ReLU(W1 x + b1);  h2 = ReLU(W2 h1 + b2);  s_hat = softplus(W3 h2 + b3)      (s_hat > 0)

``x`` is the standardised feature vector of :class:`SpreadFeatures` (see :data:`FEATURES`); the
output is a **total spread in ticks** (ask - bid, in units of the instrument's tick).
:class:`SpreadModel` is a trained network with its feature standardisation (versioned ``.npz``
file), :class:`NNSpreadAS` the quoter that uses it live.

The target (the ex-post optimal spread), the dataset replay, the optimiser and the time-ordered
validation are in :mod:`daemon.training.spread_nn` (``mmd train-spread``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from daemon.core.book import OrderBook
from daemon.core.events import BUY, Trade
from daemon.models import npzfile
from daemon.models.base import MarketState, RawQuote

MODEL_FORMAT = "mmd-spread-nn"
MODEL_VERSION = 1

#: Feature vector of :class:`SpreadFeatures` (units in the names).
FEATURES = (
    "spread_ticks",          # best ask - best bid, ticks
    "imbalance_l1",          # (bid1 - ask1) / (bid1 + ask1) sizes, in [-1, 1]
    "imbalance_l5",          # same over the top 5 levels
    "trade_rate_hz",         # public trades per second over the trade window
    "log_volume_rate",       # log1p(lots per second) over the trade window
    "signed_volume_frac",    # (buy - sell taker lots) / (buy + sell) over the window, 0 if none
    "realized_vol_ticks",    # std of mid changes sampled every vol_sample_ms, ticks per sqrt(second)
    "abs_mid_move_ticks",    # |mid(now) - mid(now - trade window)|, ticks
)


class ModelLoadError(ValueError):
    """A spread model file that is missing, corrupt, of another format or version."""


# ------------------------------------------------------------------------------------ features
class SpreadFeatures:
    """Incremental features from the verified book and public trades (pure: time is ``ts_ms``).

    Feed :meth:`on_book` after each applied ``orderbook.50`` update and :meth:`on_trade` for each
    public trade; :meth:`vector` returns the :data:`FEATURES` at time ``ts_ms`` (O(window) worst
    case, amortised O(1) per event). ``None`` until the book has both sides."""

    def __init__(self, trade_window_ms: int = 5_000, vol_window_ms: int = 30_000, vol_sample_ms: int = 500) -> None:
        self.trade_window_ms = trade_window_ms
        self.vol_window_ms = vol_window_ms
        self.vol_sample_ms = vol_sample_ms
        self._trades: deque[tuple[int, int, int]] = deque()  # (ts, side, lots)
        self._buy = 0
        self._sell = 0
        self._mids: deque[tuple[int, float]] = deque()  # sampled mids (ticks) on the vol grid
        self._mid_hist: deque[tuple[int, float]] = deque()  # mid at each book update for the move
        self._last_sample_ms = -1
        self._cur_mid = 0.0
        self._top: tuple[int, int, int, int, int, int] | None = None  # bid, ask, bq1, aq1, bq5, aq5

    def on_book(self, book: OrderBook) -> None:
        if not book.live:
            return
        bb, ba = book.best_bid, book.best_ask
        if bb is None or ba is None:
            return
        b5 = book.bid_levels(5)
        a5 = book.ask_levels(5)
        self._top = (bb, ba, b5[0][1], a5[0][1], sum(s for _, s in b5), sum(s for _, s in a5))
        ts = book.ts_ms
        mid = 0.5 * (bb + ba)
        self._mid_hist.append((ts, mid))
        while self._mid_hist and self._mid_hist[0][0] < ts - self.trade_window_ms - 60_000:
            self._mid_hist.popleft()
        self._sample(ts, mid)

    def _sample(self, ts: int, mid: float) -> None:
        """Mid on a fixed grid of ``vol_sample_ms``: a grid point strictly before ``ts`` gets the mid
        that was in force then (the previous one), a grid point at ``ts`` the new one."""
        step = self.vol_sample_ms
        if self._last_sample_ms < 0:
            self._last_sample_ms = ts - ts % step
            self._mids.append((self._last_sample_ms, mid))
        else:
            prev = self._cur_mid
            while self._last_sample_ms + step <= ts:
                self._last_sample_ms += step
                self._mids.append((self._last_sample_ms, mid if self._last_sample_ms == ts else prev))
        self._cur_mid = mid
        cutoff = ts - self.vol_window_ms
        while self._mids and self._mids[0][0] < cutoff:
            self._mids.popleft()

    def on_trade(self, tr: Trade) -> None:
        self._trades.append((tr.ts_ms, tr.side, tr.qty))
        if tr.side == BUY:
            self._buy += tr.qty
        else:
            self._sell += tr.qty
        self._expire(tr.ts_ms)

    def _expire(self, ts: int) -> None:
        cutoff = ts - self.trade_window_ms
        tq = self._trades
        while tq and tq[0][0] <= cutoff:
            _, side, lots = tq.popleft()
            if side == BUY:
                self._buy -= lots
            else:
                self._sell -= lots

    def vector(self, ts_ms: int) -> np.ndarray | None:
        if self._top is None:
            return None
        self._expire(ts_ms)
        bb, ba, bq1, aq1, bq5, aq5 = self._top
        w = self.trade_window_ms / 1000.0
        vol = self._buy + self._sell
        mids = np.fromiter((m for _, m in self._mids), float)
        rv = float(np.std(np.diff(mids))) / math.sqrt(self.vol_sample_ms / 1000.0) if mids.size > 2 else 0.0
        now_mid = 0.5 * (bb + ba)
        past = now_mid
        for t, m in self._mid_hist:  # oldest first: first mid at or after the window start
            if t >= ts_ms - self.trade_window_ms:
                past = m
                break
        return np.array([
            float(ba - bb),
            (bq1 - aq1) / (bq1 + aq1) if bq1 + aq1 > 0 else 0.0,
            (bq5 - aq5) / (bq5 + aq5) if bq5 + aq5 > 0 else 0.0,
            len(self._trades) / w,
            math.log1p(vol / w),
            (self._buy - self._sell) / vol if vol > 0 else 0.0,
            rv,
            abs(now_mid - past),
        ])


# ------------------------------------------------------------------------------------ network
#: candidate total spreads (ticks) of the ex-post label (:mod:`daemon.training.spread_nn`)
DEFAULT_GRID = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)


def softplus(z):
    return np.logaddexp(0.0, z)


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class MLP:
    """Two ReLU hidden layers and a softplus output, float64, He initialisation from ``seed``."""

    def __init__(self, n_in: int, hidden: tuple[int, int] = (32, 32), seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        h1, h2 = hidden
        self.params = {
            "W1": rng.normal(0, math.sqrt(2.0 / n_in), (n_in, h1)), "b1": np.zeros(h1),
            "W2": rng.normal(0, math.sqrt(2.0 / h1), (h1, h2)), "b2": np.zeros(h2),
            "W3": rng.normal(0, math.sqrt(1.0 / h2), (h2, 1)), "b3": np.zeros(1),
        }

    def forward(self, X: np.ndarray):
        p = self.params
        z1 = X @ p["W1"] + p["b1"]
        a1 = np.maximum(z1, 0.0)
        z2 = a1 @ p["W2"] + p["b2"]
        a2 = np.maximum(z2, 0.0)
        z3 = a2 @ p["W3"] + p["b3"]
        return softplus(z3)[:, 0], (X, z1, a1, z2, a2, z3)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.forward(np.atleast_2d(X))[0]

    def loss_and_grads(self, X: np.ndarray, y: np.ndarray):
        """Mean squared error ``mean((s_hat - y)**2)`` and its gradients (backpropagation)."""
        s, (X, z1, a1, z2, a2, z3) = self.forward(X)
        n = X.shape[0]
        d = s - y
        loss = float(np.mean(d * d))
        p = self.params
        g3 = (2.0 / n) * d[:, None] * sigmoid(z3)  # d softplus = sigmoid
        grads = {"W3": a2.T @ g3, "b3": g3.sum(0)}
        g2 = (g3 @ p["W3"].T) * (z2 > 0)
        grads["W2"], grads["b2"] = a1.T @ g2, g2.sum(0)
        g1 = (g2 @ p["W2"].T) * (z1 > 0)
        grads["W1"], grads["b1"] = X.T @ g1, g1.sum(0)
        return loss, grads


@dataclass(frozen=True)
class SpreadTrainConfig:
    """How a model was trained (:mod:`daemon.training.spread_nn`); saved in, and read back from,
    the model file."""

    hidden: tuple[int, int] = (32, 32)
    epochs: int = 40
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    val_frac: float = 0.2
    horizon_s: float = 1.0
    decision_ms: int = 250
    inventory_penalty_ticks: float = 1.0
    grid: tuple[int, ...] = DEFAULT_GRID


@dataclass
class SpreadModel:
    """A trained network plus the feature standardisation. :meth:`predict` returns ticks."""

    net: MLP
    mean: np.ndarray
    std: np.ndarray
    config: SpreadTrainConfig
    metrics: dict = field(default_factory=dict)

    def predict(self, features) -> np.ndarray | float:
        """Predicted total spread **in ticks** (> 0) for one feature vector (float) or a matrix of
        them (array), features ordered as :data:`FEATURES`."""
        x = np.asarray(features, dtype=float)
        out = self.net.predict((np.atleast_2d(x) - self.mean) / self.std)
        return float(out[0]) if x.ndim == 1 else out

    def save(self, path: str | Path) -> None:
        meta = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "features": list(FEATURES),
                "config": asdict(self.config), "metrics": self.metrics}
        arrays = {k: v for k, v in self.net.params.items()}
        npzfile.write(path, meta, {"mean": self.mean, "std": self.std, **arrays})

    @classmethod
    def load(cls, path: str | Path) -> "SpreadModel":
        p = Path(path)
        meta, arrays = npzfile.read(p, what="spread model", kind="model", error=ModelLoadError, fmt=MODEL_FORMAT,
                                    version=MODEL_VERSION,
                                    arrays={k: float for k in ("W1", "b1", "W2", "b2", "W3", "b3", "mean", "std")})
        if meta.get("features") != list(FEATURES):
            raise ModelLoadError(f"spread model {str(p)!r}: trained on features {meta.get('features')!r},"
                                 f" this build computes {list(FEATURES)!r}")
        try:
            cfgd = dict(meta["config"])
            cfgd["hidden"] = tuple(cfgd["hidden"])
            cfgd["grid"] = tuple(cfgd["grid"])
            cfg = SpreadTrainConfig(**cfgd)
        except (KeyError, TypeError) as e:
            raise ModelLoadError(f"spread model {str(p)!r}: bad config: {e}") from None
        nf = len(FEATURES)
        h1, h2 = cfg.hidden
        shapes = {"W1": (nf, h1), "b1": (h1,), "W2": (h1, h2), "b2": (h2,), "W3": (h2, 1), "b3": (1,),
                  "mean": (nf,), "std": (nf,)}
        for k, shp in shapes.items():
            if arrays[k].shape != shp or not np.all(np.isfinite(arrays[k])):
                raise ModelLoadError(f"spread model {str(p)!r}: array {k} has shape {arrays[k].shape},"
                                     f" expected {shp}, or non-finite values")
        if np.any(arrays["std"] <= 0):
            raise ModelLoadError(f"spread model {str(p)!r}: non-positive feature std")
        net = MLP(nf, cfg.hidden, cfg.seed)
        for k in ("W1", "b1", "W2", "b2", "W3", "b3"):
            net.params[k] = arrays[k]
        return cls(net, arrays["mean"], arrays["std"], cfg, dict(meta.get("metrics", {})))


# ------------------------------------------------------------------------------------ quoter
class NNSpreadAS:
    """Quoter: the wrapped A-S quoter's reservation price (inventory skew) with the network's
    total spread. ``features`` is a :class:`SpreadFeatures` the engine feeds with book updates and
    trades (or any callable ``ts_ms -> feature vector``); the spread in ticks times
    ``state.tick`` is centred on the A-S reservation price. Falls back to the A-S quote while the
    features are not ready."""

    name = "avellaneda-nn"

    def __init__(self, as_quoter, spread_model: SpreadModel, features) -> None:
        self.inner = as_quoter
        self.model = spread_model
        self.features = features

    def _vector(self, ts_ms: int):
        f = self.features
        return f.vector(ts_ms) if hasattr(f, "vector") else f(ts_ms)

    def quote(self, state: MarketState) -> RawQuote:
        base = self.inner.quote(state)
        x = self._vector(state.ts_ms)
        if x is None:
            return base
        spread = self.model.predict(x) * state.tick
        r = base.reservation
        bid, ask = r - 0.5 * spread, r + 0.5 * spread
        return RawQuote(bid=bid, ask=ask, reservation=r, delta_bid=state.mid - bid, delta_ask=ask - state.mid,
                        why=f"nn spread {spread / state.tick:.2f}t")
