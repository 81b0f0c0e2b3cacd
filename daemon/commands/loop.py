"""Event loop selection: uvloop when it loads, the asyncio default loop with a warning otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from daemon.logging import get_logger


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError as e:  # pragma: no cover - depends on the platform
        get_logger("mmd").warning("uvloop_unavailable", error=str(e), fallback="asyncio")
        return asyncio.run(coro)
    return uvloop.run(coro)
