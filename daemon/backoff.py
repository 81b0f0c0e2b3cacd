"""Retry delays for the network shell: capped exponential backoff with jitter in the upper half.

One rule for the websocket reconnect loop (``daemon/bybit/stream.py``) and the start-up retries
(``daemon/app.py``), both of which may retry forever. (The REST client's per-request retries use
full jitter, ``uniform(0, cap)``, over a bounded count: ``daemon/bybit/rest.py``.)
"""

from __future__ import annotations

import random

#: the doubling stops here: 2**30 times any base is far past any cap, and a loop that retries for
#: days never builds an integer too large for a float (``base * 2**1100`` raises OverflowError)
MAX_DOUBLINGS = 30


def retry_delay(rng: random.Random, attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): uniform in ``[cap / 2, cap]``
    with ``cap = min(max_s, base_s * 2**attempt)``, for any ``attempt``."""
    cap = min(max_s, base_s * (2 ** min(attempt, MAX_DOUBLINGS)))
    return rng.uniform(cap / 2, cap)
