"""``mmd train-rl``: train the tabular Q-learning quoter in the A-S 2008 simulator.

Shows a plain-text progress bar on stderr with the running score (CARA certainty equivalent of the
current episode's exploring paths), then evaluates the greedy policy on fresh paths (a different
seed) against the A-S inventory and symmetric strategies and writes the versioned policy file.
"""

from __future__ import annotations

import argparse

from daemon.commands.train_common import fail, progress_line, save_and_report
from daemon.models.rl import TrainConfig
from daemon.training.rl import train


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--gamma", type=float, default=d.gamma, help="risk aversion (default 0.1)")
    p.add_argument("--episodes", type=int, default=d.episodes, help=f"training episodes (default {d.episodes})")
    p.add_argument("--paths", type=int, default=d.paths_per_episode,
                   help=f"simulated paths per episode (default {d.paths_per_episode})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reward", choices=["mean-variance", "pnl"], default="mean-variance",
                   help="mean-variance: dPnL - gamma*sigma^2*dt/2 * q^2 (default); pnl: no inventory penalty")
    p.add_argument("--out", required=True, metavar="FILE", help="policy file to write (.npz)")
    p.add_argument("--json", action="store_true", help="print the evaluation as JSON on stdout")


def _bar(step: int, total: int, ce: float) -> str:
    width = 30
    fill = int(width * step / total)
    return f"train-rl [{'#' * fill}{'.' * (width - fill)}] {step}/{total} running CE {ce:8.2f}"


def run(args: argparse.Namespace) -> int:
    if args.gamma <= 0 or args.episodes < 1 or args.paths < 1:
        return fail("train-rl", "--gamma must be > 0, --episodes and --paths >= 1", 2)
    cfg = TrainConfig(gamma=args.gamma, episodes=args.episodes, paths_per_episode=args.paths, seed=args.seed,
                      gamma_inv=0.0 if args.reward == "pnl" else None)
    pol = train(cfg, progress=progress_line(_bar))
    return save_and_report("train-rl", pol, args.out, args.json, {"out": args.out, **pol.metrics},
                           lambda: _table(cfg, pol.metrics, args.out))


def _table(cfg: TrainConfig, m: dict, out: str) -> None:
    print(f"trained in {m['train_seconds']:.1f} s; greedy policy on {cfg.eval_paths} fresh paths "
          f"(seed {m['eval_seed']}):")
    for name, row in m["eval"].items():
        print(f"  {name:<10} CE {row['cara_ce']:7.2f}  mean-var {row['mean_variance']:7.2f}  "
              f"profit {row['profit_mean']:6.2f} +- {row['profit_std']:5.2f}  final q sd {row['final_q_std']:5.2f}")
    print(f"wrote {out}")
