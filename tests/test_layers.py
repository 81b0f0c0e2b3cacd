"""The layering of the package, read from the source with ``ast`` (nothing is imported, so a lazy
function-level import counts as much as a top-level one):

* ``daemon/models/`` and ``daemon/features/`` are pure maths: they import nothing from the config
  (``daemon.config``, pydantic), the feed (``daemon.bybit``, ``daemon.recording``), the paper venue,
  the simulator, training or the commands. Settings reach them as plain parameters through
  ``daemon/wiring.py``.
* the simulator does not import training or commands (training runs the simulator, not the reverse).
* command-line code lives in ``daemon/commands/`` (one module per command) and ``daemon/cli.py``:
  no other module defines ``add_arguments``, and every ``COMMANDS`` entry points into
  ``daemon.commands``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "daemon"

#: what the pure-maths layers must not import (a name and everything below it)
PURE_FORBIDDEN = (
    "daemon.config", "daemon.bybit", "daemon.recording", "daemon.paper", "daemon.sim", "daemon.commands",
    "daemon.training", "daemon.wiring", "daemon.cli", "pydantic", "pydantic_settings",
)
SIM_FORBIDDEN = ("daemon.training", "daemon.commands", "daemon.cli")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


def imported_names(path: Path, root: Path = ROOT) -> set[tuple[int, str]]:
    """``(line, module)`` for every import in the file, at any depth: ``import a.b``, ``from a
    import b`` (both ``a`` and ``a.b``, since ``b`` may be a module), relative imports resolved
    against the file's package, and ``importlib.import_module("a.b")`` with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = _module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add((node.lineno, name))
            out.update((node.lineno, f"{name}.{a.name}") for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if called in ("import_module", "__import__"):
                out.add((node.lineno, node.args[0].value))
    return out


def _violations(files: list[Path], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """``"path:line imports X"`` once per import statement that reaches a ``forbidden`` module."""
    bad = []
    for f in files:
        hits = {(line, x) for line, name in imported_names(f, root) for x in forbidden
                if name == x or name.startswith(x + ".")}
        bad += [f"{f.relative_to(root)}:{line} imports {x}" for line, x in sorted(hits)]
    return bad


@pytest.mark.parametrize("layer", ["models", "features", "execution"])
def test_pure_layers_import_no_config_feed_venue_sim_training_or_commands(layer):
    files = _sources(layer)
    assert files, f"no sources under daemon/{layer}"
    assert _violations(files, PURE_FORBIDDEN) == []


def test_core_is_at_the_bottom():
    """``daemon/core/`` (events, instruments, the book, the engine) imports nothing of mmd above it:
    only ``daemon.core`` itself and ``daemon.native`` (the one switch for the C accelerators)."""
    bad = [f"{f.relative_to(ROOT)}:{line} imports {name}" for f in _sources("core")
           for line, name in sorted(imported_names(f))
           if name.startswith("daemon") and not name.startswith(("daemon.core", "daemon.native"))]
    assert bad == []


def test_the_simulator_does_not_import_training_or_commands():
    assert _violations(_sources("sim"), SIM_FORBIDDEN) == []


def test_the_import_reader_sees_lazy_relative_and_dynamic_imports(tmp_path):
    """The checks above are only as good as :func:`imported_names`: it must see what hides."""
    pkg = tmp_path / "daemon" / "models"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("import importlib\n"
                 "def f():\n    from daemon.config import Settings\n"
                 "from ..bybit import messages\n"
                 "from daemon import sim\n"
                 "m = importlib.import_module('pydantic')\n")
    names = {n for _, n in imported_names(f, tmp_path)}
    assert {"daemon.config", "daemon.bybit", "daemon.bybit.messages", "daemon.sim", "pydantic"} <= names
    assert _violations([f], PURE_FORBIDDEN, tmp_path) == [
        "daemon/models/x.py:3 imports daemon.config", "daemon/models/x.py:4 imports daemon.bybit",
        "daemon/models/x.py:5 imports daemon.sim", "daemon/models/x.py:6 imports pydantic"]


def _defines(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]


def test_command_line_code_lives_in_commands_only():
    commands = PKG / "commands"
    outside = [f"{f.relative_to(ROOT)}:{line}" for f in sorted(PKG.rglob("*.py"))
               if commands not in f.parents and f != PKG / "cli.py" for line in _defines(f, "add_arguments")]
    assert outside == []


def _registry() -> dict[str, str]:
    """``COMMANDS`` of daemon/cli.py as ``{command: module}``, read from the source."""
    tree = ast.parse((PKG / "cli.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] if isinstance(node, ast.Assign) \
            else None
        if isinstance(target, ast.Name) and target.id == "COMMANDS":
            value = ast.literal_eval(node.value)
            return {name: mod for name, (mod, _help) in value.items()}
    raise AssertionError("no COMMANDS in daemon/cli.py")


def test_every_command_is_a_module_of_daemon_commands():
    reg = _registry()
    assert len(reg) >= 12
    for name, mod in reg.items():
        assert mod.startswith("daemon.commands."), f"{name} -> {mod}"
        path = ROOT / (mod.replace(".", "/") + ".py")
        assert path.is_file(), f"{name} -> {mod}: no {path.relative_to(ROOT)}"
        assert _defines(path, "add_arguments") and _defines(path, "run"), f"{mod} needs add_arguments() and run()"
