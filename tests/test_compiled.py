"""The per-tick modules run compiled (mypyc, see setup.py), and compiled they compute exactly what
their Python source computes: a replay journals the same records, byte for byte, from the installed
package (mypyc modules + C accelerators) and from a plain copy of the source (no native code)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPILED = ["daemon.features.windows", "daemon.features.vpin", "daemon.features.state", "daemon.models.base",
            "daemon.models.avellaneda", "daemon.models.glft", "daemon.models.inventory", "daemon.models.quoting"]
NO_COMPILE = os.environ.get("MMD_NO_COMPILE", "") not in ("", "0")


def test_setup_compiles_the_modules_this_test_expects():
    text = open(os.path.join(ROOT, "setup.py")).read()
    listed = [m.replace(".", "/") + ".py" for m in COMPILED]
    assert all(f'"{p}"' in text for p in listed)


@pytest.mark.skipif(NO_COMPILE, reason="installed with MMD_NO_COMPILE=1")
def test_the_per_tick_modules_are_compiled():
    import importlib

    plain = [m for m in COMPILED if importlib.import_module(m).__file__.endswith(".py")]
    assert not plain, f"not compiled (pip install -e . needs a C compiler and mypy): {plain}"


def _import_files(tmp_path, code: str):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)


def test_a_stale_compiled_module_runs_from_source_with_one_warning(tmp_path):
    """An edited source next to its older compiled module: ``import daemon`` still works, every
    module of the compiled group runs from its source (not the old code), and stderr says so once."""
    pkg = tmp_path / "daemon"
    shutil.copytree(os.path.join(ROOT, "daemon"), pkg, ignore=shutil.ignore_patterns("__pycache__", "*.so", "_compiled.py"))
    (pkg / "features" / "state.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not really")
    (pkg / "_compiled.py").write_text("SOURCES = {'daemon.features.state': '0' * 64}\n")
    r = _import_files(tmp_path, "import daemon.features.state as s; print(s.__file__)")
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.strip() == str(pkg / "features" / "state.py")
    assert r.stderr.count("changed since the build") == 1 and "daemon.features.state" in r.stderr, r.stderr


@pytest.mark.skipif(NO_COMPILE, reason="installed with MMD_NO_COMPILE=1")
def test_an_edit_to_one_compiled_source_switches_the_whole_group_to_source(tmp_path):
    """The real build, copied: unedited, the modules load compiled; after a one-line edit of one
    compiled module's source, all of them load from source (mypyc's group calls its modules
    natively, so one cannot be swapped alone) and a replay-sized import still works."""
    import importlib

    import daemon

    pkg_src = os.path.dirname(daemon.__file__)
    group = [p for p in os.listdir(os.path.dirname(pkg_src)) if p.startswith("daemon__mypyc.")]
    if not group or not os.path.exists(os.path.join(pkg_src, "_compiled.py")):
        pytest.skip("not an in-place compiled build")
    shutil.copytree(pkg_src, tmp_path / "daemon", ignore=shutil.ignore_patterns("__pycache__"))
    for g in group:
        shutil.copy(os.path.join(os.path.dirname(pkg_src), g), tmp_path / g)
    code = "import daemon.features.state as e, daemon.models.quoting as q; print(e.__file__); print(q.__file__)"
    importlib.invalidate_caches()
    r = _import_files(tmp_path, code)
    assert r.returncode == 0 and all(f.endswith(".so") for f in r.stdout.split()), r.stdout + r.stderr[-800:]
    assert "changed since the build" not in r.stderr
    with open(tmp_path / "daemon" / "features" / "state.py", "a") as f:
        f.write("\n# an edit\n")
    r = _import_files(tmp_path, code + "; from daemon.replay import replay")
    assert r.returncode == 0, r.stderr[-800:]
    assert all(f.endswith(".py") for f in r.stdout.split()), r.stdout
    assert r.stderr.count("changed since the build") == 1


def _replay(cwd, env_extra, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update(env_extra)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    led = os.path.join(cwd, "led.sqlite")
    if os.path.exists(led):
        os.remove(led)
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "replay", "--ledger", led, "--json", "--no-progress"],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    c = sqlite3.connect(led)
    (rid,) = c.execute("SELECT DISTINCT run_id FROM journal").fetchone()
    rows = c.execute("SELECT rec_id, kind, symbol, ts_ms, pos, body FROM journal WHERE run_id = ? ORDER BY seq",
                     (rid,)).fetchall()
    c.close()
    return rows, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env", [
    {"MMD_ADVERSE__MODEL_PATH": os.path.join(ROOT, "daemon", "data", "adverse_btcusdt.json"),
     "MMD_OPS__AUDIT_EVERY_N": "50"},
    {"MMD_QUOTER__KIND": "glft", "MMD_INVENTORY__PENALTY": "asymmetric", "MMD_QUOTER__HORIZON_MODE": "session"},
], ids=["as-adverse-audit", "glft-asym-session"])
def test_installed_and_plain_source_journal_the_same(tmp_path, env):
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copytree(os.path.join(ROOT, "daemon"), plain / "daemon",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "_compiled.py"))
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    rows_installed, sum_installed = _replay(str(a), env)
    rows_plain, sum_plain = _replay(str(b), env, pythonpath=str(plain))
    assert len(rows_installed) > 1000
    kinds = {r[1] for r in rows_installed}
    assert {"order", "fill"} <= kinds and ("audit" in kinds) == ("MMD_OPS__AUDIT_EVERY_N" in env), kinds
    assert rows_installed == rows_plain
    for s, d in ((sum_installed, a), (sum_plain, b)):
        s.pop("seconds"), s.pop("frames_per_s")
        assert s.pop("ledger") == os.path.join(str(d), "led.sqlite")  # each run names its own ledger
    assert sum_installed == sum_plain
