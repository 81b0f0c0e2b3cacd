"""What a one-shot command prints (issue "What an operator and a newcomer meet", section "Command
output and exit codes"), run through the real CLI in a subprocess.

* one-shot commands print only their result on stdout, their log lines go to stderr
  (``mmd replay X --json | jq .`` works; the daemon's stdout logging is checked in test_e2e_daemon);
* ``mmd replay`` without ``--json`` prints a table whose numbers agree with ``mmd report`` on the
  ledger it names;
* ``mmd replay rec/*`` after ``mmd record --out rec`` skips the sidecar files;
* ``mmd resume`` on a ledger with nothing tripped writes nothing;
* the demo says that its fill count varies and points to ``mmd replay``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from daemon.core.instrument import btcusdt_linear
from daemon.paper.inventory import Mark
from daemon.paper.ledger import Ledger
from daemon.recording import bundled_recording, instrument_row
from daemon.risk import RiskEvent
from test_cli_config import ROOT, mmd  # tests/ is on sys.path (pytest's rootdir-relative import)

NOT_JSON_FRAME = b"1723100000000000000 {this is not json"


def _json_lines(text: str) -> list[dict]:
    """Every line of ``text`` parsed as JSON (fails the test on a line that is not)."""
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON log line: {line[:200]!r}")
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """One ``mmd replay --json`` of the bundled recording into a fresh ledger: (ledger, summary)."""
    ledger = str(tmp_path_factory.mktemp("replayed") / "ledger.sqlite")
    r = mmd("replay", "--json", "--no-progress", "--ledger", ledger)
    assert r.returncode == 0, r.stderr
    return ledger, json.loads(r.stdout)


def test_replay_json_stdout_is_only_the_result_logs_on_stderr(tmp_path):
    # the bundled recording with one malformed frame after its first 100 lines: a bad_frame warning,
    # and MMD_PURE_PYTHON forces the fast_path_unavailable warning whatever the install
    with gzip.open(bundled_recording(), "rb") as f:
        lines = f.read().splitlines()
    rec = tmp_path / "with_bad_frame.bybit"
    rec.write_bytes(b"\n".join(lines[:100] + [NOT_JSON_FRAME] + lines[100:]) + b"\n")
    ledger = tmp_path / "l.sqlite"
    r = mmd("replay", str(rec), "--json", "--no-progress", "--log-format", "json", "--ledger", str(ledger),
            env={"MMD_PURE_PYTHON": "1"})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert sum(summary["parse_errors"].values()) == 1
    assert summary["ledger"] == str(ledger) and summary["symbols"]["BTCUSDT"]["fills"] > 0
    events = {e["event"] for e in _json_lines(r.stderr)}
    assert {"fast_path_unavailable", "bad_frame"} <= events, events


@pytest.mark.parametrize("argv", [
    ["config", "show"],
    ["sim", "--paths", "20", "--json"],
    ["train-rl", "--episodes", "2", "--paths", "5", "--json", "--out", "{tmp}/policy.npz"],
    ["train-spread", "--epochs", "1", "--json", "--out", "{tmp}/spread.npz"],
    ["report", "{ledger}", "--json"],
], ids=lambda a: a[0])
def test_one_shot_commands_print_only_json_on_stdout(tmp_path, replayed, argv):
    argv = [a.format(tmp=tmp_path, ledger=replayed[0]) for a in argv]
    r = mmd(*argv, "--log-level", "debug", "--log-format", "json", env={"MMD_PURE_PYTHON": "1"})
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # the whole of stdout is one JSON document


def test_replay_table_agrees_with_the_ledger_report(tmp_path):
    ledger = tmp_path / "l.sqlite"
    r = mmd("replay", "--no-progress", "--ledger", str(ledger))
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert "{" not in r.stdout, r.stdout  # a table, not a Python dict
    head = out[1].split()
    assert head == ["symbol", "frames", "trades", "book", "fills", "volume", "position", "spread", "inventory", "fees",
                    "funding", "total", "quotes", "decisions"]
    row = dict(zip(head, next(line for line in out if line.startswith("BTCUSDT ")).split()))
    assert any(line.startswith(f"ledger {ledger} ") for line in out), r.stdout
    assert any("quote currency" in line for line in out)
    # the oracle: mmd report folds the journal the replay wrote (independently of the replay's counters)
    rep = mmd("report", str(ledger), "--json")
    assert rep.returncode == 0, rep.stderr
    sym = json.loads(rep.stdout)["symbols"]["BTCUSDT"]
    num = lambda s: float(s.replace(",", ""))  # noqa: E731
    assert int(num(row["fills"])) == sym["fills"] > 0
    assert num(row["volume"]) == pytest.approx(sym["volume"], abs=1e-4)
    assert num(row["position"]) == pytest.approx(sym["position"], abs=1e-4)
    for comp in ("spread", "inventory", "fees", "funding", "total"):
        assert num(row[comp]) == pytest.approx(sym["pnl"][comp], abs=0.006), comp
    frames = sum(1 for line in gzip.open(bundled_recording(), "rb") if line.strip())
    assert int(num(row["frames"])) == frames
    assert int(num(row["decisions"])) >= int(num(row["quotes"])) > 0


def _env(**kw: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update(kw)
    return env


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def test_replay_of_a_record_directory_glob_skips_the_sidecars(tmp_path):
    """``mmd record --out rec`` against the embedded exchange, then ``mmd replay rec/*``."""
    ex = subprocess.Popen([sys.executable, "-m", "daemon.cli", "exchange", "--port", "0", "--speed", "50",
                           "--log-level", "warning"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(ex.stdout.readline())
        rec = tmp_path / "rec"
        with open(tmp_path / "record.log", "wb") as log:
            recorder = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "record", "--out", str(rec)], cwd=ROOT, stdout=log, stderr=log,
                env=_env(MMD_MARKET__REST_URL=info["rest_url"], MMD_MARKET__WS_URL=info["ws_url"],
                         MMD_OPS__METRICS_PORT="0"))
            try:
                recorder.wait(4)
            except subprocess.TimeoutExpired:
                pass
            assert _stop(recorder) == 0, (tmp_path / "record.log").read_text()[-2000:]
    finally:
        _stop(ex)
    files = sorted(str(p) for p in rec.iterdir())  # what the shell makes of rec/*
    recordings = [f for f in files if f.endswith(".bybit.gz")]
    assert recordings and len(files) == 2 * len(recordings), files  # each recording has its sidecar
    frames = sum(1 for f in recordings for line in gzip.open(f, "rb") if line.strip())
    assert frames > 0
    r = mmd("replay", *files, "--json", "--no-progress", "--no-trade")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == frames


def test_train_adverse_skips_the_sidecars_too(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    data = rec / "btc.bybit.gz"
    data.write_bytes(bundled_recording().read_bytes())
    (rec / "btc.bybit.gz.instruments.json").write_text(json.dumps([instrument_row(btcusdt_linear())]))
    runs = [mmd("train-adverse", *files, "--json", "--out", str(tmp_path / f"m{i}.json"))
            for i, files in enumerate([sorted(str(p) for p in rec.iterdir()), [str(data)]])]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    with_sidecar, without = (json.loads(r.stdout) for r in runs)
    assert with_sidecar["train_rows"] > 0
    assert {**with_sidecar, "out": None} == {**without, "out": None}


@pytest.mark.parametrize("argv", [["replay", "--no-trade"], ["train-adverse", "--out", "m.json"]], ids=lambda a: a[0])
def test_sidecars_only_are_refused(tmp_path, argv):
    side = tmp_path / "x.bybit.gz.instruments.json"
    side.write_text("[]")
    r = mmd(argv[0], str(side), *argv[1:])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"mmd {argv[0]}: no recordings among the files, only instrument sidecars ({side}, ...)"]


def _ledger_state(path) -> tuple[dict[str, int], str]:
    """Row counts of every table of the ledger, and the sha256 of the file (read through a plain
    read-only sqlite3 connection, not the code under test)."""
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: c.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        c.close()
    return counts, hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_resume_with_nothing_tripped_says_so_and_writes_nothing(tmp_path):
    path = str(tmp_path / "l.sqlite")
    inst = btcusdt_linear()
    with Ledger.open(path, "calm", "live", instruments={inst.symbol: inst}) as led:
        led.append(Mark("mark:calm", inst.symbol, 1, 60000.0, None, None, 0))
    with Ledger.open(path, "tripped", "live", instruments={inst.symbol: inst}) as led:
        led.append(RiskEvent("risk:1:1", "trip", "max_drawdown", "*", 1, 600.0, 500.0, "max_drawdown"))
    before = _ledger_state(path)
    assert before[0]["journal"] == 4, before  # an instrument and one record per run
    r = mmd("resume", path, "--run", "calm")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"mmd resume: nothing to resume: run calm in {path} has no tripped risk gate "
                                     "(nothing written)"]
    assert _ledger_state(path) == before
    # the check can see a write: resuming the tripped run adds one journal row
    r = mmd("resume", path, "--run", "tripped")
    assert r.returncode == 0 and "tripped before: tripped" in r.stdout, r.stdout + r.stderr
    after = _ledger_state(path)
    assert after[0]["journal"] == before[0]["journal"] + 1
    # now nothing in the ledger is tripped: the default (every run) has nothing to do either
    r = mmd("resume", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"mmd resume: nothing to resume: no run in {path} has a tripped risk gate "
                                     "(nothing written)"]
    assert _ledger_state(path) == after


def test_demo_summary_says_it_varies_and_points_to_replay(tmp_path):
    r = mmd("demo", "--speed", "100", "--out", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.splitlines()
    table = next(i for i, line in enumerate(out) if line.startswith("symbol "))
    note = [i for i, line in enumerate(out) if "paced by the wall clock" in line]
    assert len(note) == 1 and note[0] > table, r.stdout  # with the summary, after the fill count
    assert "fill count varies" in out[note[0]] and out[note[0]].endswith("use: mmd replay"), out[note[0]]


@pytest.mark.parametrize("flag", ["--rotate-mb", "--rotate-minutes"])
def test_record_bad_rotation_is_one_line_on_stderr(tmp_path, flag):
    r = mmd("record", "--out", str(tmp_path / "rec"), flag, "0")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == ["mmd record: --rotate-mb and --rotate-minutes must be > 0"]
    assert not (tmp_path / "rec").exists()
