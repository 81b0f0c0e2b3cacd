"""Configuration errors: exit status 2 and one line naming the key, the value and what is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mmd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], capture_output=True, text=True, env=e, cwd=ROOT, timeout=60)


def test_config_show_prints_effective_config_with_env_override():
    r = mmd("config", "show", env={"MMD_QUOTER__GAMMA": "0.25"})
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["quoter"]["gamma"] == 0.25
    assert cfg["market"]["rest_url"] == "https://api.bybit.com" and cfg["market"]["depth"] == 50
    assert cfg["mode"] == "paper" and cfg["market"]["symbols"] == ["BTCUSDT"]


def test_default_toml_equals_builtin_defaults():
    r1 = mmd("config", "show")
    r2 = mmd("--config", os.path.join(ROOT, "config", "default.toml"), "config", "show")
    assert r1.returncode == r2.returncode == 0, r2.stderr
    assert json.loads(r1.stdout) == json.loads(r2.stdout)


@pytest.mark.parametrize(
    "toml,env,needle",
    [
        ("[market]\ndepth = 7\n", {}, "market.depth = 7: allowed: 1, 50, 200 or 1000"),
        ("[quoter]\ngamma = -1\n", {}, "quoter.gamma = -1"),
        ("[market]\nsymbolz = ['BTCUSDT']\n", {}, "market.symbolz"),
        ("", {"MMD_WS__PING_INTERVAL_S": "soon"}, "ws.ping_interval_s = \"soon\""),
        ("[market\n", {}, "invalid TOML"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, toml, env, needle):
    p = tmp_path / "bad.toml"
    p.write_text(toml)
    r = mmd("--config", str(p), "config", "show", env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]


def test_missing_config_file_exits_2(tmp_path):
    r = mmd("--config", str(tmp_path / "nope.toml"), "run")
    assert r.returncode == 2 and "not found" in r.stderr
