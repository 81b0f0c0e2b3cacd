"""Adverse-selection classifier: L2-regularised logistic regression (numpy, Newton/IRLS).

Model (the seed's ``P(adverse | x) = sigmoid(w'x + b)``) on standardised features
``z = (x - mean) / std``.

**One model for both sides, mirrored.** A row is (decision, side). For the **ask** side the raw
feature vector is used as is; for the **bid** side every *directional* feature
(:data:`daemon.features.DIRECTIONAL_FEATURES`: OFI, imbalances, queue pressure, signed flow,
weighted-mid lean) is negated. A directional feature then always reads "pressure against this
side" (a positive OFI pushes the price up: bad for our ask, and, negated, good for our bid). The
model therefore has no side term: it cannot learn the drift of the training period as a side
bias, and each decision contributes two rows (twice the data). ``predict`` returns
``(p_bid, p_ask)`` from two dot products.

**Training** (:func:`fit_logistic`): minimise ``sum_i logloss_i + (l2/2) * ||w||^2`` (intercept not
penalised) by Newton's method with step halving. ``l2`` is either given or chosen on an inner time
split of the training rows (first 70% / last 30% of the training part; never the validation
split) from a fixed grid, by inner log-loss; the final fit uses all training rows.

Standardised values are clipped to ``[-Z_CLIP, Z_CLIP]`` (5) in training and at runtime, so a
feature that barely moved in training cannot dominate when it does move; a NaN feature counts as
its training mean.

**Threshold** (chosen on training data only): the probability maximising Youden's J
(TPR - FPR) on the training rows' in-sample predictions.

Model file: JSON, ``format = "mmd-adverse-logit"``, ``version = 1``; see :meth:`AdverseModel.to_dict`.
Loading problems raise :class:`ModelLoadError` with a one-line message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from daemon.features import DIRECTIONAL_FEATURES, FEATURE_NAMES
from daemon.models import npzfile
from daemon.native import load_native

FORMAT = "mmd-adverse-logit"
VERSION = 1

#: the classifier's default inputs: the seed's [VPIN, OFI, spread, volume, imbalance] and more
DEFAULT_FEATURES: tuple[str, ...] = (
    "vpin",
    "ofi",
    "spread_bps",
    "volume",
    "imbalance_top",
    "imbalance_k",
    "queue_pressure",
    "trade_rate",
    "avg_trade_size",
    "depth_ratio",
    "realized_vol_per_s",
    "spread_z",
    "delta_window",
    "wmid_lean_ticks",
)

L2_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)

#: standardised features are clipped to [-Z_CLIP, Z_CLIP] (train and runtime alike): a feature that
#: hardly moved in training (e.g. a spread pinned at one tick) must not explode when it moves
Z_CLIP = 5.0


class ModelLoadError(Exception):
    """The adverse model file cannot be used; the message is one line."""


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC = P(score of a random positive > random negative), ties counting 1/2
    (Mann-Whitney U with average ranks). NaN when a class is absent."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    ranks = np.empty(len(p), dtype=np.float64)
    i = 0
    n = len(p)
    while i < n:
        j = i
        while j + 1 < n and ps[j + 1] == ps[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0  # average 1-based rank of the tie group
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood (natural log); ``p`` clipped to ``[eps, 1 - eps]``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    if len(y) == 0:
        return math.nan
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score cut ``t`` (flag when ``p >= t``) maximising TPR - FPR; 0.5 if a class is absent."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return 0.5
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    last = np.r_[ps[1:] != ps[:-1], True]  # cut only between distinct scores
    j = tp[last] / n1 - fp[last] / n0
    k = int(np.argmax(j))
    return float(ps[last][k])


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))


# ---------------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------------


def fit_logistic(Z: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """Newton/IRLS for ``min sum logloss + (l2/2)||w||^2`` on (already standardised) ``Z``.
    Returns ``(w, b)``. ``l2 >= 0``; with ``l2 = 0`` separable data stops at ``max_iter``."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = Z.shape
    A = np.hstack([Z, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    ybar = y.mean() if n else 0.5
    if 0.0 < ybar < 1.0:
        theta[-1] = math.log(ybar / (1.0 - ybar))
    reg = np.full(d + 1, float(l2))
    reg[-1] = 0.0

    def objective(th: np.ndarray) -> float:
        a = A @ th
        # sum log(1 + e^a) - y a, stably
        return float(np.sum(np.logaddexp(0.0, a) - y * a) + 0.5 * np.sum(reg * th * th))

    f = objective(theta)
    for _ in range(max_iter):
        p = _sigmoid(A @ theta)
        g = A.T @ (p - y) + reg * theta
        wgt = p * (1.0 - p)
        H = (A * wgt[:, None]).T @ A + np.diag(reg) + 1e-12 * np.eye(d + 1)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        t = 1.0
        while True:
            cand = theta - t * step
            fc = objective(cand)
            if fc <= f + 1e-12 * max(1.0, abs(f)) or t < 1e-8:
                break
            t *= 0.5
        theta, f_old, f = cand, f, fc
        if np.max(np.abs(t * step)) < tol or abs(f_old - f) <= 1e-14 * max(1.0, abs(f)):
            break
    return theta[:-1].copy(), float(theta[-1])


def mirror(X: np.ndarray, names: Sequence[str], side: int) -> np.ndarray:
    """Rows for one side: ``side = +1`` (ask) returns ``X``; ``-1`` (bid) negates the directional
    columns."""
    if side > 0:
        return X
    s = np.array([-1.0 if n in DIRECTIONAL_FEATURES else 1.0 for n in names])
    return X * s


def side_rows(X: np.ndarray, y_bid: np.ndarray, y_ask: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Stack mirrored bid rows and ask rows (decision order preserved within each block)."""
    return np.vstack([mirror(X, names, -1), X]), np.concatenate([y_bid, y_ask]).astype(bool)


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(X, axis=0) if len(X) else np.zeros(X.shape[1])
    std = np.nanstd(X, axis=0) if len(X) else np.ones(X.shape[1])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    return mean, std


def _z(X: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float = Z_CLIP) -> np.ndarray:
    Z = (X - mean) / std
    Z = np.where(np.isfinite(Z), Z, 0.0)  # a missing feature counts as its training mean
    return np.clip(Z, -clip, clip)


def choose_l2(X: np.ndarray, yb: np.ndarray, ya: np.ndarray, names: Sequence[str], grid: Sequence[float] = L2_GRID,
              inner_frac: float = 0.7) -> tuple[float, dict[float, float]]:
    """Pick ``l2`` by log-loss on an inner time split of the training decisions (rows in time
    order): fit on the first ``inner_frac``, score on the rest. Returns (l2, {l2: inner loss})."""
    n = len(X)
    cut = int(n * inner_frac)
    if cut < 10 or n - cut < 10:
        return 1.0, {}
    Xa, ya_ = side_rows(X[:cut], yb[:cut], ya[:cut], names)
    Xb, yb_ = side_rows(X[cut:], yb[cut:], ya[cut:], names)
    mean, std = _standardise(Xa)
    Za, Zb = _z(Xa, mean, std), _z(Xb, mean, std)
    scores: dict[float, float] = {}
    for l2 in grid:
        w, b = fit_logistic(Za, ya_, l2)
        scores[l2] = log_loss(yb_, _sigmoid(Zb @ w + b))
    best = min(grid, key=lambda v: (scores[v], -v))
    return best, scores


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------


@dataclass
class AdverseModel:
    """A trained classifier. ``predict(features) -> (p_bid, p_ask)``."""

    feature_names: list[str]
    mean: list[float]
    std: list[float]
    weights: list[float]
    intercept: float
    threshold: float
    l2: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)
    z_clip: float = Z_CLIP

    def __post_init__(self) -> None:
        self._prepare()

    def _prepare(self) -> None:
        self._names = tuple(self.feature_names)
        self._sgn = tuple(-1.0 if n in DIRECTIONAL_FEATURES else 1.0 for n in self.feature_names)
        self._inv = tuple(1.0 / s for s in self.std)
        # per feature: (mirrored for the bid, sign, mean, 1/std, weight)
        self._cols = tuple((sg != 1.0, sg, m, inv, w) for sg, m, inv, w in zip(self._sgn, self.mean, self._inv, self.weights))

    # -- runtime -------------------------------------------------------------------------------

    def predict(self, features: Any) -> tuple[float, float]:
        """``(p_bid, p_ask)``: probability that a fill of our bid / ask now is adverse.

        ``features`` is a :class:`daemon.features.FeatureState` (anything with ``vector(names)``)
        or a mapping name -> value. A NaN feature counts as its training mean. The two dot products
        run in C (``daemon/models/_fastmodels.c``) when built, bit-identical to :meth:`predict_py`."""
        if _adverse_pair is None:
            return self.predict_py(features)
        if hasattr(features, "vector"):
            vals = features.vector(self._names)
        else:
            vals = tuple([features[n] for n in self._names])
        return _adverse_pair(vals, self._cols, self.intercept, self.z_clip)

    def predict_py(self, features: Any) -> tuple[float, float]:
        """:meth:`predict` in pure Python (the reference of the C loop)."""
        if hasattr(features, "vector"):
            vals = features.vector(self._names)
        else:
            vals = [features[n] for n in self._names]
        a_ask = a_bid = self.intercept
        hi = self.z_clip
        lo = -hi
        isfinite = math.isfinite
        for v, (mirrored, sg, m, inv, w) in zip(vals, self._cols):
            if not isfinite(v):
                continue  # NaN (or inf) -> the training mean (z = 0) on both sides
            z = (v - m) * inv
            t = w * (hi if z > hi else lo if z < lo else z)
            a_ask += t
            if mirrored:
                z = (sg * v - m) * inv
                t = w * (hi if z > hi else lo if z < lo else z)
            a_bid += t  # (unmirrored: sg * v == v, the same term)
        return _sig1(a_bid), _sig1(a_ask)

    def predict_rows(self, X: np.ndarray, side: int) -> np.ndarray:
        """Vectorised probabilities for raw feature rows of one side (+1 ask, -1 bid)."""
        Z = _z(mirror(np.asarray(X, dtype=np.float64), self.feature_names, side), np.array(self.mean),
               np.array(self.std), self.z_clip)
        return _sigmoid(Z @ np.array(self.weights) + self.intercept)

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": "logistic_regression_l2_newton",
            "sides": "one model, bid rows mirror the directional features",
            "feature_names": list(self.feature_names),
            "directional_features": [n for n in self.feature_names if n in DIRECTIONAL_FEATURES],
            "scaler": {"mean": list(map(float, self.mean)), "std": list(map(float, self.std)), "z_clip": float(self.z_clip)},
            "weights": list(map(float, self.weights)),
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "l2": float(self.l2),
            **self.meta,
        }

    def save(self, path: str | Path) -> None:
        npzfile.write_atomic(path, (json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n").encode())

    @classmethod
    def from_dict(cls, d: Any, where: str = "adverse model") -> "AdverseModel":
        npzfile.check_header(d, where, FORMAT, VERSION, ModelLoadError)
        for key in ("feature_names", "scaler", "weights", "intercept", "threshold"):
            if key not in d:
                raise ModelLoadError(f"{where}: missing key {key!r}")
        names = d["feature_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ModelLoadError(f"{where}: feature_names must be a non-empty list of strings")
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ModelLoadError(f"{where}: unknown feature {unknown[0]!r} (this build has {len(FEATURE_NAMES)} features)")
        if len(set(names)) != len(names):
            raise ModelLoadError(f"{where}: duplicate feature names")
        sc = d["scaler"]
        if not isinstance(sc, dict) or "mean" not in sc or "std" not in sc:
            raise ModelLoadError(f"{where}: scaler must have 'mean' and 'std'")
        k = len(names)
        mean = _floats(sc["mean"], k, "scaler.mean", where)
        std = _floats(sc["std"], k, "scaler.std", where)
        if any(s <= 0 for s in std):
            raise ModelLoadError(f"{where}: scaler.std must be > 0")
        weights = _floats(d["weights"], k, "weights", where)
        intercept = _floats([d["intercept"]], 1, "intercept", where)[0]
        threshold = _floats([d["threshold"]], 1, "threshold", where)[0]
        if not 0.0 <= threshold <= 1.0:
            raise ModelLoadError(f"{where}: threshold {threshold} outside [0, 1]")
        l2 = d.get("l2", 1.0)
        z_clip = sc.get("z_clip", Z_CLIP)
        if isinstance(z_clip, bool) or not isinstance(z_clip, (int, float)) or not z_clip > 0:
            raise ModelLoadError(f"{where}: scaler.z_clip must be a number > 0")
        known = {"format", "version", "model", "sides", "feature_names", "directional_features", "scaler",
                 "weights", "intercept", "threshold", "l2"}
        meta = {kk: v for kk, v in d.items() if kk not in known}
        return cls(list(names), mean, std, weights, intercept, threshold, float(l2), meta, float(z_clip))

    @classmethod
    def load(cls, path: str | Path, expect_features: Sequence[str] | None = None) -> "AdverseModel":
        """Load and validate a model file. ``expect_features``: if given, the model must use
        exactly these features (in this order). Raises :class:`ModelLoadError`."""
        p = Path(path)
        where = f"adverse model {str(p)!r}"
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise ModelLoadError(f"{where}: file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"{where}: unreadable: {e}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{where}: corrupt JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        m = cls.from_dict(d, where)
        if expect_features is not None and list(expect_features) != m.feature_names:
            raise ModelLoadError(f"{where}: features {m.feature_names} differ from the expected {list(expect_features)}")
        return m


def _floats(v: Any, k: int, key: str, where: str) -> list[float]:
    if not isinstance(v, list) or len(v) != k:
        n = len(v) if isinstance(v, list) else type(v).__name__
        raise ModelLoadError(f"{where}: {key} has {n} values for {k} features")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise ModelLoadError(f"{where}: {key} holds a non-finite or non-numeric value {x!r}")
        out.append(float(x))
    return out


_fastmodels = load_native("daemon.models._fastmodels")
_adverse_pair = _fastmodels.adverse_pair if _fastmodels is not None else None


def _sig1(a: float) -> float:
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------------------
# train / evaluate on a dataset
# ---------------------------------------------------------------------------------------------


def evaluate(model: AdverseModel, X: np.ndarray, y_bid: np.ndarray, y_ask: np.ndarray) -> dict[str, float]:
    """AUC, log-loss, base rate and row count over both sides' rows."""
    p = np.concatenate([model.predict_rows(X, -1), model.predict_rows(X, +1)])
    y = np.concatenate([y_bid, y_ask]).astype(bool)
    flagged = p >= model.threshold
    return {
        "auc": roc_auc(y, p),
        "logloss": log_loss(y, p),
        "base_rate": float(y.mean()) if len(y) else math.nan,
        "rows": int(len(y)),
        "decisions": int(len(X)),
        "flag_rate": float(flagged.mean()) if len(y) else math.nan,
        "precision_at_threshold": float(y[flagged].mean()) if flagged.any() else math.nan,
    }


def train(
    X: np.ndarray,
    y_bid: np.ndarray,
    y_ask: np.ndarray,
    names: Sequence[str],
    l2: float | None = None,
) -> AdverseModel:
    """Fit on training decisions (time order). ``l2=None`` chooses it by an inner time split."""
    names = list(names)
    scores: dict[float, float] = {}
    if l2 is None:
        l2, scores = choose_l2(X, y_bid, y_ask, names)
    Xs, ys = side_rows(X, y_bid, y_ask, names)
    mean, std = _standardise(Xs)
    w, b = fit_logistic(_z(Xs, mean, std), ys, l2)
    p = _sigmoid(_z(Xs, mean, std) @ w + b)
    thr = youden_threshold(ys, p)
    meta = {"threshold_rule": "youden_j_on_training_rows", "l2_inner_logloss": {str(k): v for k, v in scores.items()}}
    return AdverseModel(names, mean.tolist(), std.tolist(), w.tolist(), b, thr, float(l2), meta)
