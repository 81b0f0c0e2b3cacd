"""Configuration errors: exit status 2 and one line naming the key, the value and what is allowed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib

import pytest

from daemon.config import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOML = os.path.join(ROOT, "config", "default.toml")


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


def test_default_toml_shows_every_section_and_key_at_its_default():
    """config/default.toml is the reference a newcomer reads: every section and key of Settings, at
    the built-in default (the section models' own defaults, not read through the file or the env),
    each with a comment. A key that defaults to None has no TOML value: it must appear commented out
    in its section."""
    with open(DEFAULT_TOML, "rb") as f:
        doc = tomllib.load(f)
    text = open(DEFAULT_TOML, encoding="utf-8").read()
    assert set(doc) == set(Settings.model_fields)  # every section, nothing else
    assert doc["mode"] == Settings.model_fields["mode"].default
    for name, field in Settings.model_fields.items():
        if name == "mode":
            continue
        defaults = field.default_factory().model_dump(mode="json")
        assert doc[name] == {k: v for k, v in defaults.items() if v is not None}, name
        body = re.search(rf"^\[{name}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
        for k, v in defaults.items():
            line = re.search(rf"^(# )?{k} = .*$", body, re.M)
            assert line, f"[{name}] {k} is not shown"
            assert line.group(0).startswith("# ") == (v is None), line.group(0)
            assert "#" in line.group(0).lstrip("# "), f"[{name}] {k}: no comment (meaning, unit)"


@pytest.mark.parametrize(
    "toml,env,needle",
    [
        ("[market]\ndepth = 7\n", {}, "market.depth = 7: allowed: 1, 50, 200 or 1000"),
        ("[quoter]\ngamma = -1\n", {}, "quoter.gamma = -1"),
        ("[market]\nsymbolz = ['BTCUSDT']\n", {}, "market.symbolz"),
        ("", {"MMD_WS__PING_INTERVAL_S": "soon"}, "ws.ping_interval_s = \"soon\""),
        ("[market\n", {}, "invalid TOML"),
        # environment values that do not parse: the same one line, not a traceback
        ("", {"MMD_MARKET__SYMBOLS": '["BTCUSDT",'}, 'market.symbols = "[\\"BTCUSDT\\",": not a comma list or a JSON list'),
        ("", {"MMD_MARKET": "notjson"}, 'market = "notjson": not a JSON object'),
        ("", {"MMD_MARKET__SYMBOLS": "BTCUSDT,btc"}, "market.symbols = [\"BTCUSDT\", \"btc\"]: symbol 'btc' must be upper-case"),
        # URLs: a scheme the client speaks and a host
        ("", {"MMD_MARKET__REST_URL": "notaurl"}, 'market.rest_url = "notaurl": must be a URL with a host starting with http://'),
        ("", {"MMD_MARKET__REST_URL": "ftp://api.bybit.com"}, 'market.rest_url = "ftp://api.bybit.com": must be a URL'),
        ("", {"MMD_MARKET__WS_URL": "https://stream.bybit.com"}, 'market.ws_url = "https://stream.bybit.com": must be a URL'),
        ("[market]\nws_url = 'wss://:443/x'\n", {}, "market.ws_url = \"wss://:443/x\": must be a URL with a host starting with ws://"),
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


@pytest.mark.parametrize("value", ["BTCUSDT,ETHUSDT", " BTCUSDT , ETHUSDT ", '["BTCUSDT","ETHUSDT"]'])
def test_env_lists_are_comma_lists_or_json(value):
    r = mmd("config", "show", env={"MMD_MARKET__SYMBOLS": value, "MMD_CALIBRATION__A_BOUNDS": "0.001,100",
                                   "MMD_MARKET__TOPICS": "publicTrade,tickers"})
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["market"]["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert cfg["market"]["topics"] == ["publicTrade", "tickers"]
    assert cfg["calibration"]["A_bounds"] == [0.001, 100.0]


def test_missing_config_file_exits_2(tmp_path):
    r = mmd("--config", str(tmp_path / "nope.toml"), "run")
    assert r.returncode == 2 and "not found" in r.stderr
