"""The lock files (requirements/, written by scripts/lock.sh) are what installs run from: each pins
every dependency pyproject.toml declares, exactly once, with hashes; the Docker runtime and build
locks agree with the development lock version for version; and the venv the tests run in holds
exactly the locked versions (so a green run says something about the lock, not about this machine).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQ = ROOT / "requirements"


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    text = path.read_text()
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^ \\\n;]+)", text, re.M):
        name = m.group(1).lower().replace("_", "-")
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = m.group(2)
    # every pin carries at least one sha256 hash
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text)
    for b in blocks:
        if re.match(r"[A-Za-z0-9_.-]+==", b):
            assert "--hash=sha256:" in b, f"{path.name}: no hash in {b[:60]!r}"
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("lock", sorted(REQ.glob("lock-py3*.txt")), ids=lambda p: p.name)
def test_dev_lock_pins_every_declared_dependency(lock):
    proj = _project()
    pins = _pins(lock)
    declared = proj["project"]["dependencies"] + proj["project"]["optional-dependencies"]["test"]
    declared += [r for r in (REQ / "build.in").read_text().splitlines() if r.strip() and not r.startswith("#")]
    missing = [d for d in declared if _name(d) not in pins]  # the locks are for Linux: uvloop included
    assert not missing, missing


def test_docker_locks_agree_with_the_dev_lock():
    dev = _pins(REQ / "lock-py311.txt")
    runtime = _pins(REQ / "runtime-py311.txt")
    build = _pins(REQ / "build-py311.txt")
    for name, ver in {**runtime, **build}.items():
        assert dev.get(name) == ver, (name, ver, dev.get(name))
    proj = _project()
    assert {_name(d) for d in proj["project"]["dependencies"]} <= set(runtime)
    assert not {"pytest", "hypothesis", "mypy"} & set(runtime)  # the image carries no test or build tools
    # the build lock holds exactly what pyproject's [build-system] requires (and its dependencies)
    assert {_name(r) for r in proj["build-system"]["requires"]} <= set(build)
    text = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime-py311.txt" in text
    assert "--require-hashes -r requirements/build-py311.txt" in text


def test_mypy_pin_is_the_same_in_build_system_and_lock():
    proj = _project()
    (mypy,) = [r for r in proj["build-system"]["requires"] if _name(r) == "mypy"]
    assert mypy.split("==")[1] == _pins(REQ / "lock-py311.txt")["mypy"]


def test_this_venv_runs_the_locked_versions():
    """The suite runs in a venv made by scripts/install.sh; every locked package is installed at the
    locked version (skipped under another Python, which has its own lock)."""
    lock = REQ / f"lock-py{sys.version_info[0]}{sys.version_info[1]}.txt"
    if not lock.exists():
        pytest.skip(f"no lock for this Python ({lock.name})")
    if not (Path(sys.prefix) / ".mmd-install").exists():
        pytest.skip("not a venv made by scripts/install.sh (e.g. scripts/test-latest.sh)")
    wrong = {}
    for name, ver in _pins(lock).items():
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            got = None
        if got != ver:
            wrong[name] = (ver, got)
    assert not wrong, f"installed versions differ from {lock.name}: {wrong}"
