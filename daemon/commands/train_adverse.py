"""``mmd train-adverse RECORDING... --out FILE [--eval RECORDING...] [--json]``

Replays the recordings (:mod:`daemon.training.dataset`), labels decision ticks (adverse when the
mid moves against a hypothetical fill by more than ``label_ticks`` ticks within ``horizon_s``
seconds; defaults from ``[adverse]``), splits the rows **by time** (first ``--train-frac`` for
training, the rest for validation; training rows whose label horizon reaches into the validation
period are dropped), trains :mod:`daemon.models.adverse` on the training part only (``l2`` chosen on
an inner time split of it unless ``--l2`` is given), writes the model file and prints metrics (a
table, or one JSON object with ``--json``). ``--eval`` recordings are scored with the trained model.

Exit status: 0 ok, 1 unusable data, 2 bad usage/config.
"""

from __future__ import annotations

import argparse
import math
from functools import partial

import numpy as np

from daemon.commands.common import recordings_only, settings_from_args
from daemon.commands.train_common import fail, save_and_report
from daemon.core.instrument import Instrument, btcusdt_linear
from daemon.features import FEATURE_NAMES
from daemon.models.adverse import DEFAULT_FEATURES, evaluate, train
from daemon.training.dataset import RecordingError, build_dataset
from daemon.wiring import feature_params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recordings", nargs="+", metavar="RECORDING",
                   help="recording files (<recv_ns> <frame> lines, .gz ok; *.instruments.json sidecars are skipped)")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write (JSON)")
    p.add_argument("--eval", nargs="+", default=[], metavar="RECORDING", help="recordings scored with the trained model")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--label-ticks", type=int, default=None, help="adverse move in ticks (default [adverse] label_ticks)")
    p.add_argument("--horizon-s", type=float, default=None, help="label horizon in seconds (default [adverse] label_horizon_s)")
    p.add_argument("--decision-ms", type=int, default=250, help="decision clock step in ms (default 250)")
    p.add_argument("--warmup-s", type=float, default=None,
                   help="skip decisions in the first seconds of each recording (default: the longest feature window)")
    p.add_argument("--train-frac", type=float, default=0.7, help="time-ordered training fraction (default 0.7)")
    p.add_argument("--l2", type=float, default=None, help="L2 penalty (default: chosen on an inner time split of the training part)")
    p.add_argument("--features", default=None, help="comma-separated feature names (default: %s)" % ",".join(DEFAULT_FEATURES))
    p.add_argument("--symbol", default="BTCUSDT", help="symbol of the recordings (instrument rules are built in for BTCUSDT)")


def _instrument(symbol: str) -> Instrument:
    if symbol == "BTCUSDT":
        return btcusdt_linear()
    raise ValueError(f"no offline instrument rules for {symbol!r} (only BTCUSDT is built in)")


_fail = partial(fail, "train-adverse")


def run(args: argparse.Namespace) -> int:
    args.recordings = recordings_only("train-adverse", args.recordings)
    args.eval = recordings_only("train-adverse", args.eval)
    s = settings_from_args(args)
    label_ticks = args.label_ticks if args.label_ticks is not None else s.adverse.label_ticks
    horizon_s = args.horizon_s if args.horizon_s is not None else s.adverse.label_horizon_s
    if label_ticks < 1 or not (horizon_s > 0):
        return _fail(f"--label-ticks must be >= 1 and --horizon-s > 0 (got {label_ticks}, {horizon_s})", 2)
    if not 0.1 <= args.train_frac <= 0.95:
        return _fail(f"--train-frac must be in [0.1, 0.95] (got {args.train_frac})", 2)
    if args.decision_ms <= 0:
        return _fail(f"--decision-ms must be > 0 (got {args.decision_ms})", 2)
    if args.l2 is not None and not (args.l2 >= 0):
        return _fail(f"--l2 must be >= 0 (got {args.l2})", 2)
    names = list(DEFAULT_FEATURES) if not args.features else [n.strip() for n in args.features.split(",") if n.strip()]
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown or not names:
        return _fail(f"unknown feature {unknown[0] if unknown else ''!r}; known: {', '.join(FEATURE_NAMES)}", 2)
    try:
        inst = _instrument(args.symbol)
    except ValueError as e:
        return _fail(str(e), 2)
    kw = dict(label_ticks=label_ticks, horizon_s=horizon_s, depth=s.market.depth, decision_ms=args.decision_ms,
              warmup_s=args.warmup_s)
    try:
        ds = build_dataset(args.recordings, inst, names, feature_params(s), **kw)
    except RecordingError as e:
        return _fail(str(e), 1)
    n = len(ds)
    cut = int(n * args.train_frac)
    if cut < 20 or n - cut < 10:
        return _fail(f"too few labelled decisions ({n}) for a time split; use longer recordings", 1)
    split_ms = int(ds.t_ms[cut])
    h_ms = int(round(horizon_s * 1000))
    tr = np.arange(cut)[ds.t_ms[:cut] + h_ms < split_ms]  # embargo: labels must not see the validation period
    va = np.arange(cut, n)
    Xtr, ybtr, yatr = ds.X[tr], ds.y_bid[tr], ds.y_ask[tr]
    if ybtr.all() and yatr.all() or not (ybtr.any() or yatr.any()):
        return _fail("training labels have a single class; change --label-ticks/--horizon-s", 1)
    model = train(Xtr, ybtr, yatr, names, l2=args.l2)
    m_tr = evaluate(model, Xtr, ybtr, yatr)
    m_va = evaluate(model, ds.X[va], ds.y_bid[va], ds.y_ask[va])
    m_ev = None
    if args.eval:
        try:
            ev = build_dataset(args.eval, inst, names, feature_params(s), **kw)
        except RecordingError as e:
            return _fail(str(e), 1)
        m_ev = evaluate(model, ev.X, ev.y_bid, ev.y_ask)
    model.meta.update({
        "label": {"ticks": label_ticks, "horizon_s": horizon_s, "rule": "mid moves against the side by more than ticks within horizon"},
        "decision_ms": args.decision_ms,
        "data": {
            "recordings": list(ds.sources),
            "span_ms": [ds.span_ms[0], ds.span_ms[1]],
            "train_span_ms": [int(ds.t_ms[tr[0]]), int(ds.t_ms[tr[-1]])],
            "val_span_ms": [int(ds.t_ms[va[0]]), int(ds.t_ms[va[-1]])],
            "train_decisions": int(len(tr)),
            "val_decisions": int(len(va)),
            "train_rows": m_tr["rows"],
            "val_rows": m_va["rows"],
        },
        "metrics": {"train": _clean(m_tr), "val": _clean(m_va), **({"eval": _clean(m_ev)} if m_ev else {})},
        "features_config": s.features.model_dump(mode="json"),
    })
    summary = {
        "out": args.out,
        "label_ticks": label_ticks,
        "horizon_s": horizon_s,
        "l2": model.l2,
        "threshold": model.threshold,
        "train_rows": m_tr["rows"],
        "val_rows": m_va["rows"],
        "base_rate": m_tr["base_rate"],
        "train_auc": m_tr["auc"],
        "train_logloss": m_tr["logloss"],
        "val_base_rate": m_va["base_rate"],
        "val_auc": m_va["auc"],
        "val_logloss": m_va["logloss"],
        "val_flag_rate": m_va["flag_rate"],
        "val_precision_at_threshold": m_va["precision_at_threshold"],
        "span_ms": [ds.span_ms[0], ds.span_ms[1]],
    }
    if m_ev:
        summary.update({"eval_auc": m_ev["auc"], "eval_logloss": m_ev["logloss"], "eval_rows": m_ev["rows"],
                        "eval_base_rate": m_ev["base_rate"]})
    return save_and_report("train-adverse", model, args.out, args.json, _clean(summary),
                           lambda: _table(summary, model, m_tr, m_va, m_ev))


def _clean(d: dict | None) -> dict:
    """NaN -> None so the JSON stays valid."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in (d or {}).items()}


def _table(summary: dict, model, m_tr: dict, m_va: dict, m_ev: dict | None) -> None:
    def f(x: float) -> str:
        return "   n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:6.3f}"

    print(f"adverse model -> {summary['out']}   label: > {summary['label_ticks']} ticks within {summary['horizon_s']} s")
    print(f"l2 = {model.l2:g}   threshold (Youden J, train) = {model.threshold:.3f}")
    print(f"{'split':<8} {'rows':>7} {'base':>6} {'AUC':>6} {'logloss':>7} {'flag%':>6} {'prec':>6}")
    for name, m in (("train", m_tr), ("val", m_va), ("eval", m_ev)):
        if m:
            print(f"{name:<8} {m['rows']:>7d} {f(m['base_rate'])} {f(m['auc'])} {f(m['logloss']):>7} "
                  f"{f(m['flag_rate'])} {f(m['precision_at_threshold'])}")
    print("standardised weights (positive = more adverse):")
    for n, w in sorted(zip(model.feature_names, model.weights), key=lambda t: -abs(t[1])):
        print(f"  {n:<20} {w:+.4f}")
