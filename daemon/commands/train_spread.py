"""``mmd train-spread``: train the neural spread predictor on a recording.

Replays the recording (default: the bundled BTCUSDT one) through the frame parser and the
``orderbook.50`` book, labels every decision point with the ex-post optimal spread
(:func:`daemon.training.spread_nn.label_optimal_spread`), fits the network on the time-ordered first
part and reports validation MAE/RMSE in ticks against the naive baselines. Progress (epoch, training
loss) goes to stderr.
"""

from __future__ import annotations

import argparse

from daemon.commands.train_common import fail, progress_line, save_and_report
from daemon.models.spread_nn import SpreadTrainConfig
from daemon.training.spread_nn import build_dataset, train_spread_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = SpreadTrainConfig()
    p.add_argument("--recording", metavar="FILE", default=None, help="recording (default: the bundled BTCUSDT file)")
    p.add_argument("--horizon", type=float, default=d.horizon_s, help=f"label horizon H in seconds (default {d.horizon_s:g})")
    p.add_argument("--decision-ms", type=int, default=d.decision_ms, help="decision grid in exchange ms (default 250)")
    p.add_argument("--penalty", type=float, default=d.inventory_penalty_ticks,
                   help="label penalty in ticks per unit of leftover inventory (default 1)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float, default=d.val_frac, help="last fraction of time for validation")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write (.npz)")
    p.add_argument("--json", action="store_true", help="print metrics as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    from daemon.recording import bundled_recording

    if args.horizon <= 0 or args.epochs < 1 or args.decision_ms < 1 or not 0 < args.val_frac < 1:
        return fail("train-spread", "--horizon > 0, --epochs >= 1, --decision-ms >= 1, 0 < --val-frac < 1", 2)
    path = args.recording or str(bundled_recording())
    cfg = SpreadTrainConfig(epochs=args.epochs, seed=args.seed, val_frac=args.val_frac, horizon_s=args.horizon,
                            decision_ms=args.decision_ms, inventory_penalty_ticks=args.penalty)
    try:
        ds = build_dataset(path, cfg.horizon_s, cfg.decision_ms, cfg.grid, cfg.inventory_penalty_ticks)
    except (OSError, ValueError) as e:
        return fail("train-spread", str(e), 1 if isinstance(e, OSError) else 2)
    try:
        model = train_spread_model(
            ds, cfg, progress=progress_line(lambda ep, total, loss: f"train-spread epoch {ep}/{total} train MSE {loss:10.2f}"))
    except ValueError as e:
        return fail("train-spread", str(e), 2)
    return save_and_report("train-spread", model, args.out, args.json, {"out": args.out, **model.metrics},
                           lambda: _table(model.metrics, args.out))


def _table(m: dict, out: str) -> None:
    print(f"{m['dataset']['decisions']} decisions ({m['n_train']} train, {m['n_val']} validation, time-ordered); "
          f"label mean {m['dataset']['label_mean']:.1f} ticks, median {m['dataset']['label_median']:.1f}")
    print(f"{'validation (ticks)':<24} {'MAE':>8} {'RMSE':>8}")
    print(f"{'network':<24} {m['val']['mae']:>8.2f} {m['val']['rmse']:>8.2f}")
    for k, v in m["baseline_val"].items():
        print(f"{k:<24} {v['mae']:>8.2f} {v['rmse']:>8.2f}")
    print(f"wrote {out}")
