#!/usr/bin/env python3
"""Does each mypyc-compiled module earn its place? Per-stage time, compiled vs plain, in one run.

A *stage* is what one compiled module does per tick on the bundled recording (39,470 frames):

* ``engine dispatch`` (``daemon/core/engine.py``): ``Engine.on_events`` with the strategy's own time
  taken out (it still includes the C book's ``apply``, the same code in every variant);
* ``features`` (``daemon/features/*``): ``FeatureState.on_book/on_trade/on_kline`` and
  ``sigma_price_per_s`` (state drives windows, volatility and vpin);
* ``calibration`` (``daemon/models/calibration.py``): ``Calibrator.set_sigma/on_timer/on_trade``;
* ``quote step`` (``daemon/models/quoting.py`` with ``base``, ``avellaneda``/``glft``,
  ``inventory``): ``QuotingPipeline.step`` as the strategy calls it, for A-S and for GLFT; and its
  parts, each called again from here on that tick's inputs: ``MarketState``, ``quoter.quote``,
  ``InventoryControl.decide``, ``finalize``;
* ``grid`` (``daemon/core/instrument.py``): ``Grid.to_int`` on every price/size string of the
  recording, cache cleared before each pass (the Python parse path; the daemon's C scanner does its
  own conversion).

Each variant runs in its own subprocess, the variants interleaved, ``--repeat`` times; the table
shows the best pass of each. Variants: ``compiled`` = the install as built (mypyc group + C
accelerators); ``plain`` = a copy of ``daemon/`` without the mypyc group (the C accelerators
``_fastbook``/``_fastmodels`` kept, so only mypyc differs); ``--variant NAME=DIR`` adds a tree
(e.g. one built with ``--build NAME=mod,mod`` : the mypyc group of just those modules, in a copy).

Usage: ``python bench/bench_compiled.py [--repeat 3] [--build NAME=daemon/features/state.py,...[@DIR]]``
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ns = time.perf_counter_ns

STAGES = [
    ("engine dispatch (+C book)", "daemon.core.engine"),
    ("  C book apply alone", "daemon.core.book (C)"),
    ("features", "daemon.features.state"),
    ("calibration", "daemon.models.calibration"),
    ("quote step A-S (whole)", "daemon.models.quoting"),
    ("quote step GLFT (whole)", "daemon.models.quoting"),
    ("  MarketState(...)", "daemon.models.base"),
    ("  AvellanedaStoikov.quote", "daemon.models.avellaneda"),
    ("  GLFT.quote", "daemon.models.glft"),
    ("  InventoryControl.decide", "daemon.models.inventory"),
    ("  finalize", "daemon.models.quoting"),
    ("grid to_int (Python parse path)", "daemon.core.instrument"),
]
MODULES = ["daemon.core.instrument", "daemon.core.engine", "daemon.features.windows", "daemon.features.volatility",
           "daemon.features.vpin", "daemon.features.state", "daemon.models.base", "daemon.models.avellaneda",
           "daemon.models.glft", "daemon.models.inventory", "daemon.models.calibration", "daemon.models.quoting"]


# -- child: one variant, one pass -----------------------------------------------------------------


def child() -> dict:
    import importlib

    import orjson

    from daemon import wiring
    from daemon.bybit.messages import FrameParser
    from daemon.config import load_settings
    from daemon.core.engine import Engine
    from daemon.core.instrument import btcusdt_linear
    from daemon.features.state import FeatureState
    from daemon.logging import configure_logging
    from daemon.models import quoting
    from daemon.models.adverse import AdverseModel
    from daemon.models.base import MarketState
    from daemon.models.calibration import Calibrator
    from daemon.models.glft import GLFT
    from daemon.recording import bundled_adverse_model, bundled_recording

    configure_logging("warning", "json")
    frames = [ln.split(b" ", 1)[1] for ln in gzip.open(bundled_recording(), "rb").read().splitlines() if ln]
    s = load_settings(overrides={"adverse": {"model_path": str(bundled_adverse_model())}})
    inst = btcusdt_linear()
    parser = FrameParser({"BTCUSDT": inst})
    batches = [out for out in (parser.parse(f, 0) for f in frames) if type(out) is list]
    t: dict[str, int] = {name: 0 for name, _ in STAGES}
    engine = Engine({"BTCUSDT": inst}, s.market.depth)
    sc = engine.symbols["BTCUSDT"]
    fs = FeatureState(inst, wiring.feature_params(s))
    calib = Calibrator(wiring.calibration_params(s), inst.price.step_float)
    model = AdverseModel.load(s.adverse.model_path)
    pipe = wiring.quoting_pipeline(s, inst, model_threshold=model.threshold)
    glft = wiring.quoting_pipeline(s, inst, GLFT(gamma=s.quoter.gamma), model_threshold=model.threshold)
    tick, lot = inst.price.step_float, inst.qty.step_float
    inner = [0]
    state = {"mid": float("nan"), "pos": 0}

    class Signal:
        """The strategy's market-facing calls, each stage timed (no risk, venue or ledger)."""

        def before_book(self, ts_ms: int) -> None:
            pass

        def on_book(self, ev) -> None:
            t0 = ns()
            book = sc.book
            a = ns()
            fs.on_book(book, ev)
            bb, ba = book.best_bid, book.best_ask
            if bb is None or ba is None:
                t["features"] += ns() - a
                inner[0] += ns() - t0
                return
            sig = fs.sigma_price_per_s()
            ofi, imb, vpin = fs.ofi, fs.imbalance_top, fs.vpin
            b = ns()
            t["features"] += b - a
            state["mid"] = (bb + ba) * 0.5 * tick
            pb, pa = model.predict(fs)  # not a mypyc module: outside every stage
            a = ns()
            calib.set_sigma(sig)
            cal = calib.on_timer(ev.ts_ms)
            b = ns()
            t["calibration"] += b - a
            pos = state["pos"] = (state["pos"] + 1) % 7 - 3  # some inventory, so limits and skew move
            kw = dict(ts_ms=ev.ts_ms, best_bid_ticks=bb, best_ask_ticks=ba, position_lots=pos, calibration=cal,
                      ofi=ofi, imbalance=imb, vpin=vpin, p_adverse_bid=pb, p_adverse_ask=pa)
            a = ns()
            pipe.step(**kw)
            b = ns()
            t["quote step A-S (whole)"] += b - a
            a = ns()
            glft.step(**kw)
            b = ns()
            t["quote step GLFT (whole)"] += b - a
            last = pipe._last
            if last is not None:
                st, raw, _q, _r, _c, dec = last
                a = ns()
                MarketState(ts_ms=st.ts_ms, mid=st.mid, best_bid=st.best_bid, best_ask=st.best_ask, tick=st.tick,
                            q=st.q, sigma=st.sigma, A=st.A, kappa=st.kappa, t_left_s=st.t_left_s, ofi=st.ofi,
                            imbalance=st.imbalance, vpin=st.vpin, spread=st.spread,
                            p_adverse_bid=st.p_adverse_bid, p_adverse_ask=st.p_adverse_ask)
                b = ns()
                t["  MarketState(...)"] += b - a
                a = ns()
                pipe.quoter.quote(st)
                b = ns()
                t["  AvellanedaStoikov.quote"] += b - a
                a = ns()
                glft.quoter.quote(st)
                b = ns()
                t["  GLFT.quote"] += b - a
                a = ns()
                pipe.inventory.decide(pos, st.mid, st.sigma, None)
                b = ns()
                t["  InventoryControl.decide"] += b - a
                a = ns()
                quoting.finalize(raw, instrument=inst, mid=st.mid, best_bid_ticks=bb, best_ask_ticks=ba,
                                 order_size_lots=pipe.order_lots, ts_ms=ev.ts_ms, inventory=dec, p_adverse_bid=pb,
                                 p_adverse_ask=pa, adverse=pipe.adverse, min_spread_ticks=pipe.min_spread_ticks)
                b = ns()
                t["  finalize"] += b - a
            inner[0] += ns() - t0

        def on_trade(self, tr) -> None:
            t0 = ns()
            fs.on_trade(tr)
            a = ns()
            t["features"] += a - t0
            mid = state["mid"]
            if mid == mid:
                calib.on_trade(tr.ts_ms, tr.price * tick, tr.qty * lot, mid, tr.side)
            b = ns()
            t["calibration"] += b - a
            inner[0] += b - t0

        def on_ticker(self, ticker, ts_ms) -> None:
            pass

        def on_kline(self, k) -> None:
            a = ns()
            fs.on_kline(k)
            b = ns()
            t["features"] += b - a
            inner[0] += b - a

        def on_book_lost(self, reason, ts_ms) -> None:
            fs.reset_book()

        def on_timer(self, ts_ms) -> None:
            pass

    sc.strategy = Signal()
    gc.collect()
    gc.disable()
    on_events = engine.on_events
    total = 0
    for evs in batches:
        a = ns()
        on_events(evs)
        total += ns() - a
        if engine.out:
            engine.out.clear()
    t["engine dispatch (+C book)"] = total - inner[0]
    from daemon.core.book import OrderBook
    from daemon.core.events import BookUpdate

    book = OrderBook("BTCUSDT", s.market.depth)
    ups = [ev for evs in batches for ev in evs if type(ev) is BookUpdate and ev.depth == s.market.depth]
    gc.collect()
    a = ns()
    for ev in ups:
        book.apply(ev)
    t["  C book apply alone"] = ns() - a

    strings: list[str] = []
    for f in frames:
        m = orjson.loads(f)
        d = m.get("data")
        if isinstance(d, dict):
            for side in ("b", "a"):
                for p, q in d.get(side) or ():
                    strings.append(p)
                    strings.append(q)
        elif isinstance(d, list):
            for tr in d:
                if "p" in tr and "v" in tr:
                    strings.append(tr["p"])
                    strings.append(tr["v"])
    from daemon.core.instrument import Grid

    grids = [Grid("0.10"), Grid("0.001")]
    gc.collect()
    a = ns()
    for i, x in enumerate(strings):
        grids[i & 1].to_int(x)
    t["grid to_int (Python parse path)"] = ns() - a
    gc.enable()
    compiled = [m for m in MODULES if not importlib.import_module(m).__file__.endswith(".py")]
    return {"ns": t, "compiled": compiled, "ticks": sum(1 for _ in batches)}


# -- parent ---------------------------------------------------------------------------------------


def plain_tree(tmp: str, src: Path = ROOT) -> str:
    """``src/daemon/`` without the mypyc group (and its hash stamp); the C accelerators stay."""
    dst = os.path.join(tmp, "plain")
    os.makedirs(dst)

    def ignore(d: str, names: list[str]) -> set[str]:
        keep = ("_fastbook.", "_fastmodels.")
        return {n for n in names if n == "__pycache__" or n == "_compiled.py"
                or (n.endswith((".so", ".pyd")) and not n.startswith(keep))}

    shutil.copytree(src / "daemon", os.path.join(dst, "daemon"), ignore=ignore)
    return dst


def build_tree(tmp: str, name: str, modules: list[str], src: Path = ROOT) -> str:
    """A copy of the plain tree (of ``src``) with a mypyc group of just ``modules`` (paths like
    setup.py's), built in place with setup.py's flags."""
    dst = os.path.join(tmp, "build-" + name)
    shutil.copytree(plain_tree(os.path.join(tmp, "p-" + name), src), dst)
    code = ("import sys; sys.argv[1:] = ['build_ext', '--inplace', '-q'];"
            "from setuptools import setup; from mypyc.build import mypycify;"
            f"exts = mypycify(['--ignore-missing-imports', '--follow-imports=silent', *{modules!r}], opt_level='3',"
            " group_name='daemon')\n"
            "for e in exts: e.extra_compile_args = [*(e.extra_compile_args or []), '-ffp-contract=off', '-fno-fast-math']\n"
            "setup(name='bench-variant', ext_modules=exts, packages=[])")
    subprocess.run([sys.executable, "-c", code], cwd=dst, check=True, stdout=subprocess.DEVNULL)
    # its own hash stamp: without one, daemon/__init__.py may find this checkout's (an editable
    # install) and run a variant whose sources differ from it from source
    with open(os.path.join(dst, "daemon", "_compiled.py"), "w") as f:
        f.write("SOURCES = %r\n" % {m[:-3].replace("/", "."): hashlib.sha256(open(os.path.join(dst, m), "rb").read()).hexdigest()
                                    for m in modules})
    return dst


def run_child(pythonpath: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cwd = pythonpath or str(ROOT)
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child"], capture_output=True, text=True,
                       env=env, cwd=cwd, timeout=900)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variant", action="append", default=[], help="NAME=DIR: a tree to put first on PYTHONPATH")
    ap.add_argument("--build", action="append", default=[],
                    help="NAME=path,path[@DIR]: build a variant whose mypyc group is just these modules "
                         "(of DIR/daemon, e.g. an older checkout with the C accelerators built; default: this tree)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child()))
        return 0
    with tempfile.TemporaryDirectory(prefix="mmd-bench-compiled-") as tmp:
        variants: list[tuple[str, str | None]] = [("compiled", None), ("plain", plain_tree(tmp))]
        for v in args.build:
            name, _, mods = v.partition("=")
            mods, _, src = mods.partition("@")
            variants.append((name, build_tree(tmp, name, mods.split(","), Path(src) if src else ROOT)))
        for v in args.variant:
            name, _, d = v.partition("=")
            variants.append((name, d))
        best: dict[str, dict[str, int]] = {}
        info: dict[str, dict] = {}
        for _ in range(args.repeat):
            for name, path in variants:
                r = run_child(path)
                info[name] = r
                b = best.setdefault(name, {})
                for k, v in r["ns"].items():
                    b[k] = min(b.get(k, v), v)
    if args.json:
        print(json.dumps({"best_ns": best, "info": info}))
        return 0
    names = [n for n, _ in variants]
    ticks = info["compiled"]["ticks"]
    for n in names:
        print(f"{n}: mypyc-compiled modules: {', '.join(m.split('.', 1)[1] for m in info[n]['compiled']) or 'none'}")
    print(f"\nbest of {args.repeat} passes over {ticks:,} event batches; total ms per pass; ratio = plain / variant")
    head = f"{'stage':34} {'module':26}" + "".join(f" {n:>12}" for n in names) + "".join(
        f" {'plain/' + n:>16}" for n in names if n != "plain")
    print(head)
    for stage, mod in STAGES:
        row = f"{stage:34} {mod.split('.', 1)[1]:26}" + "".join(f" {best[n][stage] / 1e6:12.1f}" for n in names)
        row += "".join(f" {best['plain'][stage] / best[n][stage]:15.2f}x" for n in names if n != "plain")
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
