"""``mmd config show``: print the effective configuration (file + env) as TOML-like JSON."""

from __future__ import annotations

import argparse
import json

from daemon.commands.common import settings_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["show"], help="show: print the effective config as JSON")


def run(args: argparse.Namespace) -> int:
    s = settings_from_args(args)
    print(json.dumps({"config_hash": s.config_hash(), **s.model_dump(mode="json")}, indent=2))
    return 0
