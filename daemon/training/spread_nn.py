"""Training of the neural spread predictor (:mod:`daemon.models.spread_nn`): dataset, labels,
optimiser, time-ordered validation (``mmd train-spread``).

Target: the **ex-post optimal spread** (:func:`label_optimal_spread`). At each decision time ``t``
(every ``decision_ms`` of exchange time while the ``orderbook.50`` book is LIVE) and for each
candidate total spread ``s`` (ticks) in ``grid``, a symmetric quote ``bid = m - s/2``,
``ask = m + s/2`` around the mid ``m`` is held for ``H = horizon_s`` seconds:

* the bid fills (one unit) if a SELL-taker public trade prints at or below ``bid`` in ``(t, t+H]``;
  the ask fills if a BUY-taker trade prints at or above ``ask`` (taker side, as Bybit's ``S``);
* PnL in ticks, marked at the mid ``m_H`` at ``t+H``: ``(m_H - bid)`` per bid fill plus
  ``(ask - m_H)`` per ask fill, i.e. spread capture ``s/2`` per fill minus the adverse move;
* risk adjustment: minus ``inventory_penalty_ticks * |q_H|`` (``q_H`` = bid fills - ask fills);
* the label is the grid spread with the highest risk-adjusted PnL; ties go to the narrowest (so a
  window with no trade at all labels the narrowest spread: nothing was lost by quoting tight).

This is a deliberately simple, self-contained labeller (no queue position, fills are "touch");
it is an upper bound on what a real quote would have earned.

Training: mean squared error, minibatches, Adam. Validation: time-ordered split (first
``1 - val_frac`` of decision points for training, then a purge gap of ``H`` seconds, then
validation), MAE/RMSE in ticks against the naive baselines (constant = training mean, constant =
training median, and the current market spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.bybit.messages import FrameError, FrameParser
from daemon.core.book import OrderBook
from daemon.core.events import BUY, BookUpdate, Trade
from daemon.models.spread_nn import DEFAULT_GRID, FEATURES, MLP, SpreadFeatures, SpreadModel, SpreadTrainConfig
from daemon.recording import load_instruments, read_frames


@dataclass
class SpreadDataset:
    """Decision points of a recording: ``t_ms`` (exchange ms), ``X`` features, ``y`` labels (ticks),
    ``market_spread`` (ticks, the naive baseline), ``pnl`` (risk-adjusted PnL per grid spread)."""

    t_ms: np.ndarray
    X: np.ndarray
    y: np.ndarray
    market_spread: np.ndarray
    grid: np.ndarray
    pnl: np.ndarray
    bad_frames: int = 0
    stats: dict = field(default_factory=dict)


def replay_recording(path: str | Path, symbol: str = "BTCUSDT", decision_ms: int = 250, depth: int = 50,
                     features: SpreadFeatures | None = None):
    """Replay a recording through :class:`FrameParser` and :class:`OrderBook` (topic
    ``orderbook.{depth}``). Returns ``(t_ms, X, mids, trades, bad)``: decision times and features,
    the book mid after every update as an array of ``(ts_ms, mid_ticks)``, trades as an array of
    ``(ts_ms, side, price_ticks)``, and the number of frames that failed to parse (counted, skipped)."""
    inst = load_instruments([path], [symbol])
    parser = FrameParser(inst)
    book = OrderBook(symbol, depth)
    book.request_sync("replay")
    feats = features or SpreadFeatures()
    ts_list, X_list, mids, trades = [], [], [], []
    next_dec: int | None = None
    bad = 0

    def advance(ts: int) -> None:
        # decisions at grid times strictly before this event: features see only earlier events
        nonlocal next_dec
        if next_dec is None:
            return
        while next_dec < ts:
            if book.live:
                v = feats.vector(next_dec)
                if v is not None:
                    ts_list.append(next_dec)
                    X_list.append(v)
            next_dec += decision_ms

    for recv_ns, raw in read_frames([path]):
        try:
            out = parser.parse(raw, recv_ns)
        except FrameError:
            bad += 1
            continue
        if not isinstance(out, list):
            continue
        for ev in out:
            if isinstance(ev, BookUpdate):
                if ev.depth != depth:
                    continue
                advance(ev.ts_ms)
                book.apply(ev)
                if not book.live:
                    continue
                feats.on_book(book)
                mids.append((ev.ts_ms, 0.5 * (book.best_bid + book.best_ask)))
                if next_dec is None:
                    next_dec = ev.ts_ms - ev.ts_ms % decision_ms + decision_ms
            elif isinstance(ev, Trade):
                advance(ev.ts_ms)
                feats.on_trade(ev)
                trades.append((ev.ts_ms, ev.side, ev.price))
    X = np.array(X_list, dtype=float).reshape(-1, len(FEATURES))
    return (np.array(ts_list, dtype=np.int64), X, np.array(mids, dtype=float).reshape(-1, 2),
            np.array(trades, dtype=float).reshape(-1, 3), bad)


def label_optimal_spread(t_ms: np.ndarray, mids: np.ndarray, trades: np.ndarray, horizon_s: float = 1.0,
                         grid=DEFAULT_GRID, inventory_penalty_ticks: float = 1.0):
    """Ex-post optimal total spread (ticks) for each decision time (see module docstring).
    Returns ``(labels, pnl, keep)``: ``pnl[i, j]`` is the risk-adjusted PnL of grid spread ``j`` at
    decision ``i``; ``keep`` marks decisions whose horizon lies inside the data."""
    g = np.asarray(grid, dtype=float)
    H = int(round(horizon_s * 1000))
    mt, mv = mids[:, 0], mids[:, 1]
    tt, ts_side, tp = trades[:, 0], trades[:, 1], trades[:, 2]
    n = len(t_ms)
    pnl = np.zeros((n, g.size))
    keep = np.zeros(n, dtype=bool)
    end = mt[-1] if mt.size else 0
    for i, t in enumerate(t_ms):
        if t + H > end:
            continue
        k0 = np.searchsorted(mt, t, side="right") - 1
        kH = np.searchsorted(mt, t + H, side="right") - 1
        if k0 < 0:
            continue
        keep[i] = True
        m, mH = mv[k0], mv[kH]
        lo, hi = np.searchsorted(tt, t, side="right"), np.searchsorted(tt, t + H, side="right")
        side, price = ts_side[lo:hi], tp[lo:hi]
        sells, buys = price[side != BUY], price[side == BUY]
        min_sell = sells.min() if sells.size else np.inf
        max_buy = buys.max() if buys.size else -np.inf
        bid, ask = m - g / 2, m + g / 2
        fb = (min_sell <= bid).astype(float)
        fa = (max_buy >= ask).astype(float)
        pnl[i] = fb * (mH - bid) + fa * (ask - mH) - inventory_penalty_ticks * np.abs(fb - fa)
    labels = g[np.argmax(pnl, axis=1)]  # argmax returns the first (narrowest) of ties
    return labels, pnl, keep


def build_dataset(path: str | Path, horizon_s: float = 1.0, decision_ms: int = 250, grid=DEFAULT_GRID,
                  inventory_penalty_ticks: float = 1.0, symbol: str = "BTCUSDT") -> SpreadDataset:
    t, X, mids, trades, bad = replay_recording(path, symbol=symbol, decision_ms=decision_ms)
    if len(t) == 0:
        raise ValueError(f"recording {str(path)!r}: no decision points (no LIVE orderbook.50 book)")
    y, pnl, keep = label_optimal_spread(t, mids, trades, horizon_s, grid, inventory_penalty_ticks)
    ds = SpreadDataset(t[keep], X[keep], y[keep], X[keep, 0], np.asarray(grid, float), pnl[keep], bad)
    ds.stats = {"decisions": int(keep.sum()), "trades": int(len(trades)), "book_updates": int(len(mids)),
                "bad_frames": bad, "label_mean": float(ds.y.mean()), "label_median": float(np.median(ds.y))}
    return ds


# ------------------------------------------------------------------------------------ training
class Adam:
    """Adam (Kingma & Ba 2015) with the paper's defaults beta1=0.9, beta2=0.999, eps=1e-8."""

    def __init__(self, params: dict, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, params: dict, grads: dict) -> None:
        self.t += 1
        for k in params:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * grads[k]
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * grads[k] ** 2
            mh = self.m[k] / (1 - self.b1**self.t)
            vh = self.v[k] / (1 - self.b2**self.t)
            params[k] -= self.lr * mh / (np.sqrt(vh) + self.eps)


def _errors(pred: np.ndarray, y: np.ndarray) -> dict:
    d = pred - y
    return {"mae": float(np.mean(np.abs(d))), "rmse": float(math.sqrt(np.mean(d * d)))}


def split_time_ordered(t_ms: np.ndarray, val_frac: float, purge_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, val)``: the first ``1 - val_frac`` of decisions train, then nothing
    for ``purge_ms`` (labels look ``H`` ahead and would leak), then validation."""
    n = len(t_ms)
    cut = int(round(n * (1.0 - val_frac)))
    if cut <= 0 or cut >= n:
        raise ValueError("val_frac leaves an empty train or validation set")
    t_cut = t_ms[cut - 1]
    train = np.zeros(n, dtype=bool)
    train[:cut] = True
    val = t_ms > t_cut + purge_ms
    if not val.any():
        raise ValueError("no validation decisions after the purge gap")
    return train, val


def train_spread_model(ds: SpreadDataset, cfg: SpreadTrainConfig = SpreadTrainConfig(), progress=None,
                       X=None, y=None) -> SpreadModel:
    """Fit on the time-ordered training part of ``ds``; metrics hold train/val MAE/RMSE (ticks) for
    the network and the naive baselines, and the loss curve."""
    tr, va = split_time_ordered(ds.t_ms, cfg.val_frac, int(cfg.horizon_s * 1000))
    X = ds.X if X is None else X
    y = ds.y if y is None else y
    mean = X[tr].mean(0)
    std = X[tr].std(0)
    std = np.where(std > 1e-12, std, 1.0)
    Xs = (X - mean) / std
    net = MLP(X.shape[1], cfg.hidden, cfg.seed)
    # start the output near the mean label: softplus^-1(mean)
    ym = float(y[tr].mean())
    net.params["b3"][:] = math.log(math.expm1(ym)) if ym < 30 else ym
    opt = Adam(net.params, cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    idx_tr = np.flatnonzero(tr)
    losses = []
    for ep in range(cfg.epochs):
        perm = rng.permutation(idx_tr)
        for k in range(0, perm.size, cfg.batch_size):
            b = perm[k:k + cfg.batch_size]
            _, g = net.loss_and_grads(Xs[b], y[b])
            opt.step(net.params, g)
        loss, _ = net.loss_and_grads(Xs[tr], y[tr])
        losses.append(loss)
        if progress is not None:
            progress(ep + 1, cfg.epochs, loss)
    model = SpreadModel(net, mean, std, cfg)
    pred = net.predict(Xs)
    ytr, yva = y[tr], y[va]
    metrics = {
        "n_train": int(tr.sum()), "n_val": int(va.sum()),
        "train": _errors(pred[tr], ytr), "val": _errors(pred[va], yva),
        "baseline_val": {
            "const_train_mean": _errors(np.full(yva.size, ytr.mean()), yva),
            "const_train_median": _errors(np.full(yva.size, np.median(ytr)), yva),
            "market_spread": _errors(ds.market_spread[va], yva),
        },
        "loss_first": losses[0], "loss_last": losses[-1],
        "dataset": ds.stats,
    }
    model.metrics = metrics
    return model
