"""``mmd sim``: the Avellaneda-Stoikov 2008 experiment for one or more strategies.

Prints, per strategy, the average quoted spread, mean/std of profit and of final inventory, the
mean-variance score ``mean - gamma/2 * var`` and the CARA certainty equivalent
``-1/gamma * ln E[exp(-gamma * profit)]``. ``--json`` prints a JSON list with exactly the keys
``strategy, avg_spread, profit_mean, profit_std, final_q_mean, final_q_std, mean_variance, cara_ce``.
All strategies run on the same random numbers (``--seed``).
"""

from __future__ import annotations

import argparse
import json
import sys

from daemon.sim.as2008 import STRATEGIES, ASParams, draw_randoms, make_strategy, simulate, summarize


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategies", default="inventory,symmetric",
                   help=f"comma-separated, from: {', '.join(STRATEGIES)} (default inventory,symmetric)")
    p.add_argument("--gamma", type=float, default=0.1, help="risk aversion (paper: 0.1, 0.01, 1)")
    p.add_argument("--paths", type=int, default=1000, help="number of simulated paths (paper: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policy", metavar="FILE", default=None, help="policy file for 'rl' (from mmd train-rl)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    bad = [s for s in names if s not in STRATEGIES]
    if not names or bad:
        print(f"mmd sim: unknown strategy {bad[0] if bad else '(none)'!r}; allowed: {', '.join(STRATEGIES)}",
              file=sys.stderr)
        return 2
    if args.gamma <= 0 or args.paths < 2:
        print("mmd sim: --gamma must be > 0 and --paths >= 2", file=sys.stderr)
        return 2
    params = ASParams(gamma=args.gamma)
    try:
        strategies = [make_strategy(n, params, policy_path=args.policy) for n in names]
    except ValueError as e:  # includes PolicyLoadError
        print(f"mmd sim: {e}", file=sys.stderr)
        return 2
    rnd = draw_randoms(params, args.paths, args.seed)
    rows = [summarize(simulate(s, params, randoms=rnd), args.gamma) for s in strategies]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"A-S 2008 simulation: gamma={args.gamma:g} paths={args.paths} seed={args.seed} "
          f"(s=100 T=1 sigma=2 dt=0.005 k=1.5 A=140)")
    hdr = f"{'strategy':<10} {'spread':>7} {'profit':>8} {'std':>7} {'final q':>8} {'std q':>7} {'mean-var':>9} {'CARA CE':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['strategy']:<10} {r['avg_spread']:>7.3f} {r['profit_mean']:>8.2f} {r['profit_std']:>7.2f} "
              f"{r['final_q_mean']:>8.3f} {r['final_q_std']:>7.2f} {r['mean_variance']:>9.2f} {r['cara_ce']:>8.2f}")
    return 0
