"""The RL quoter and the neural-spread A-S quoter run in `mmd replay` over the real recording end to
end, with their quotes (order events) and fills in the ledger."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mmd(*args, env=None, timeout=300):
    e = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "daemon.cli", *args], capture_output=True, text=True, env=e, cwd=ROOT,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def ledger_counts(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    kinds = dict(c.execute("SELECT kind, COUNT(*) FROM journal GROUP BY kind").fetchall())
    c.close()
    return kinds


def test_rl_quoter_in_replay(tmp_path):
    policy = tmp_path / "policy.npz"
    mmd("train-rl", "--episodes", "60", "--paths", "300", "--seed", "1", "--out", str(policy), "--json")
    assert policy.exists()
    led = tmp_path / "rl.sqlite"
    r = mmd("replay", "--ledger", str(led), "--json", "--no-progress",
            env={"MMD_QUOTER__KIND": "rl", "MMD_QUOTER__RL_POLICY": str(policy), "MMD_QUOTER__GAMMA": "0.0001"})
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    row = summary["symbols"]["BTCUSDT"]
    assert row["decisions"] > 1000 and row["quotes"] > 50
    kinds = ledger_counts(led)
    assert kinds.get("order", 0) > 50 and kinds.get("fill", 0) >= 1


def test_nn_spread_quoter_in_replay(tmp_path):
    model = tmp_path / "spread.npz"
    mmd("train-spread", "--epochs", "20", "--seed", "0", "--out", str(model), "--json")
    led = tmp_path / "nn.sqlite"
    r = mmd("replay", "--ledger", str(led), "--json", "--no-progress",
            env={"MMD_QUOTER__SPREAD_MODEL": "nn", "MMD_QUOTER__SPREAD_MODEL_PATH": str(model)})
    row = json.loads(r.stdout.strip().splitlines()[-1])["symbols"]["BTCUSDT"]
    assert row["quotes"] > 50
    assert ledger_counts(led).get("order", 0) > 50


def test_nn_spread_needs_a_model_path():
    e = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    e["MMD_QUOTER__SPREAD_MODEL"] = "nn"
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "config", "show"], capture_output=True, text=True, env=e,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "spread_model_path" in r.stderr


def test_quote_audit_records_reach_the_ledger(tmp_path):
    led = tmp_path / "audit.sqlite"
    mmd("replay", "--ledger", str(led), "--json", "--no-progress", env={"MMD_OPS__AUDIT_EVERY_N": "500"})
    from daemon.paper.ledger import Ledger

    c = sqlite3.connect(f"file:{led}?mode=ro", uri=True)
    (run,) = c.execute("SELECT DISTINCT run_id FROM journal").fetchone()
    c.close()
    with Ledger.open(str(led), run, "replay") as L:
        audits = L.records("audit")
    assert len(audits) == 6352 // 500  # one per 500 decisions (one decision per orderbook.50 update)
    a = audits[0].record
    for key in ("sigma", "A", "kappa", "q", "r", "delta_bid", "delta_ask", "raw_bid", "bid_px", "bid_reason", "p_adverse_bid", "features"):
        assert key in a, key
