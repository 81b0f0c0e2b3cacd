"""``mmd`` command line. Each subcommand lives in its own module of :mod:`daemon.commands` exposing
``add_arguments(parser)`` and ``run(args) -> int``; they are imported only when used.

Global options (before or after the subcommand): ``--config FILE``, ``--log-level``, ``--log-format``.
Exit status: 0 ok, 1 runtime failure, 2 bad usage or bad configuration (one line on stderr).

Output: the long-running commands (:data:`LONG_RUNNING`) log JSON lines on stdout (journald,
docker); every other command prints only its result on stdout and logs on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("daemon.commands.run", "run the daemon against the configured venue (paper quoting)"),
    "demo": ("daemon.commands.demo", "offline demo: embedded exchange + daemon on the bundled recording"),
    "replay": ("daemon.commands.replay", "drive the core from recordings, no network"),
    "record": ("daemon.commands.record", "record raw frames to rotating compressed files"),
    "exchange": ("daemon.commands.exchange", "serve the embedded Bybit-compatible exchange on 127.0.0.1"),
    "config": ("daemon.commands.config_cmd", "show the effective configuration"),
    "report": ("daemon.commands.report", "summarise a ledger (table, --json, PNG/HTML)"),
    "resume": ("daemon.commands.resume", "clear a tripped risk gate in a ledger"),
    "train-adverse": ("daemon.commands.train_adverse", "train the adverse-selection classifier on recordings"),
    "sim": ("daemon.commands.sim", "run the Avellaneda-Stoikov 2008 market simulation"),
    "train-rl": ("daemon.commands.train_rl", "train the tabular Q-learning quoter"),
    "train-spread": ("daemon.commands.train_spread", "train the neural spread predictor"),
}

#: commands that run until stopped: their structured log goes to stdout; the others log on stderr
LONG_RUNNING = frozenset({"run", "demo", "record", "exchange"})


def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    p.add_argument("--config", metavar="FILE", default=d, help="TOML config file (MMD_* env vars override it)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=d)
    p.add_argument("--log-format", choices=["auto", "json", "console"], default=d)


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace | None]:
    parser = argparse.ArgumentParser(prog="mmd", description="mmd: paper market-making daemon for Bybit V5")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only import the module of the chosen command (keeps `mmd --help` fast and robust).
    chosen = next((a for a in argv if a in COMMANDS), None)
    for name, (mod, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        _global_options(sp, suppress=True)
        if name == chosen:
            module = importlib.import_module(mod)
            module.add_arguments(sp)
            sp.set_defaults(_module=module)
    return parser, None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, _ = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from daemon.logging import STDERR, STDOUT, configure_logging

    # Before the command runs, so that nothing it logs (even before it loads the config) lands on
    # the stdout of a one-shot command; settings_from_args reconfigures the level/format, same stream.
    args.log_stream = STDOUT if args.command in LONG_RUNNING else STDERR
    configure_logging(getattr(args, "log_level", None) or "info", getattr(args, "log_format", None) or "auto",
                      args.log_stream)
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
