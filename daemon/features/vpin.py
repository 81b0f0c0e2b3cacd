"""VPIN with bulk volume classification (Easley, Lopez de Prado & O'Hara 2012, RFS 25(5);
reference implementation: R package PINstimation ``vpin()``; papers.md section 5).

Procedure (all incremental, O(1) amortised per trade and O(1) per read):

1. **Time bars** of ``bar_ms`` (ms; ELO use 1 minute, we default to 1 s because the bundled
   recording is 345 s long). A bar ``[k*bar_ms, (k+1)*bar_ms)`` collects the volume of the trades
   stamped inside it and its last trade price; it closes when the clock reaches its end. Bars
   without trades do not exist (as in PINstimation, which aggregates trades into bars).
2. **Bulk classification**: ``V^B = V * Z(dP / sigma_dP)``, ``V^S = V - V^B``, with ``dP`` the
   change of the last trade price from the previous bar (ticks; the first bar uses its own
   close - open), ``sigma_dP`` the sample std (ddof = 1) of the last ``sigma_bars`` bar price changes
   *including this one*, and ``Z`` the standard normal CDF. When ``sigma_dP`` is 0 or undefined,
   ``Z`` is 0.5 for ``dP = 0`` and 1 / 0 for ``dP > 0`` / ``< 0`` (the limit).
3. **Volume buckets** of exactly ``V`` lots. A bar that straddles a boundary is split: each part
   keeps the bar's buy fraction ``Z``. A bucket's order imbalance is ``OI = |V^S - V^B|``.
4. **VPIN** ``= sum_{last n buckets} OI / (n * V)``; with fewer than ``n`` full buckets the sum runs
   over the ``m`` available ones and divides by ``m * V``; NaN before the first bucket.

Bucket size: ``bucket_lots > 0`` fixes ``V``. ``bucket_lots == 0`` derives it once, ELO-style
(``V = ADV / 50`` with a 50-bucket window = one day): the volume of the bars that close within the
first ``derive_ms`` of trading, divided by ``n``. Those bars are held (at most ``derive_ms / bar_ms``)
and bucketed as soon as ``V`` is known, so no volume is lost.
"""

from __future__ import annotations

import math
from collections import deque

from daemon.features.windows import IntRollingMoments

_SQRT2 = math.sqrt(2.0)
_NEVER = 1 << 62  # later than any time in ms


def norm_cdf(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / _SQRT2)


class Vpin:
    """Incremental BVC-VPIN. Volumes in lots (int), prices in ticks (int), time in ms."""

    __slots__ = (
        "bar_ms", "n", "bucket_lots", "derive_ms", "_sig",
        "_bar_k", "_bar_vol", "_bar_open", "_bar_close", "_last_close",
        "_fill", "_acc", "_ois", "_oi_sum", "buckets", "bars",
        "_pending", "_derive_start", "_derive_vol", "bar_end_ms",
    )

    def __init__(self, bar_ms: int, n_buckets: int, bucket_lots: int, sigma_bars: int, derive_ms: int) -> None:
        if bar_ms <= 0:
            raise ValueError(f"bar_ms must be > 0, got {bar_ms}")
        if n_buckets < 1:
            raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
        if bucket_lots < 0:
            raise ValueError(f"bucket_lots must be >= 0, got {bucket_lots}")
        self.bar_ms = bar_ms
        self.n = n_buckets
        self.bucket_lots = bucket_lots  # 0 = derive
        self.derive_ms = derive_ms
        self._sig = IntRollingMoments(max(2, sigma_bars))
        self._bar_k: int | None = None  # index of the open bar
        #: end (ms, exclusive) of the open bar, a huge value when none is open: ``advance(now)``
        #: with ``now < bar_end_ms`` is a no-op
        self.bar_end_ms = _NEVER
        self._bar_vol = 0
        self._bar_open = 0
        self._bar_close = 0
        self._last_close: int | None = None
        self._fill = 0  # lots in the current bucket
        self._acc = 0.0  # sum over the current bucket of parts * (1 - 2 Z)  (= V^S - V^B)
        self._ois: deque[float] = deque(maxlen=n_buckets)
        self._oi_sum = 0.0  # running sum of _ois (lots), re-summed exactly every n-th bucket
        self.buckets = 0  # completed buckets
        self.bars = 0  # closed bars
        self._pending: list[tuple[int, float]] = []  # (lots, Z) of bars waiting for V
        self._derive_start: int | None = None
        self._derive_vol = 0

    # -- events --------------------------------------------------------------------------------

    def on_trade(self, ts_ms: int, price: int, lots: int) -> None:
        """A trade stamped ``ts_ms`` (monotone clock). Closes the open bar first if it ended."""
        k = ts_ms // self.bar_ms
        if self._bar_k is not None and k != self._bar_k:
            self._close_bar()
        if self._bar_k is None:
            self._bar_k = k
            self.bar_end_ms = (k + 1) * self.bar_ms
            self._bar_open = price
            self._bar_vol = 0
        self._bar_vol += lots
        self._bar_close = price

    def advance(self, now_ms: int) -> None:
        """The clock moved to ``now_ms``: close the open bar if ``now_ms`` is past its end."""
        k = self._bar_k
        if k is not None and now_ms >= (k + 1) * self.bar_ms:
            self._close_bar()

    # -- internals -----------------------------------------------------------------------------

    def _close_bar(self) -> None:
        k = self._bar_k
        vol = self._bar_vol
        close = self._bar_close
        ref = self._last_close if self._last_close is not None else self._bar_open
        dp = close - ref
        self._last_close = close
        self._bar_k = None
        self.bar_end_ms = _NEVER
        self._bar_vol = 0
        self.bars += 1
        sig = self._sig
        sig.push(dp)
        var = sig.var()
        if var > 0.0:
            z = norm_cdf(dp / math.sqrt(var))
        else:
            z = 0.5 if dp == 0 else (1.0 if dp > 0 else 0.0)
        if self.bucket_lots == 0:
            if self._derive_start is None:
                self._derive_start = k * self.bar_ms  # type: ignore[operator]
            self._pending.append((vol, z))
            self._derive_vol += vol
            if (k + 1) * self.bar_ms - self._derive_start >= self.derive_ms:  # type: ignore[operator]
                self.bucket_lots = max(1, round(self._derive_vol / self.n))
                pending, self._pending = self._pending, []
                for v, zz in pending:
                    self._bucket(v, zz)
            return
        self._bucket(vol, z)

    def _bucket(self, vol: int, z: float) -> None:
        cap = self.bucket_lots
        f = 1.0 - 2.0 * z  # (V^S - V^B) per lot of this bar
        while vol > 0:
            part = min(vol, cap - self._fill)
            self._fill += part
            self._acc += part * f
            vol -= part
            if self._fill == cap:
                oi = abs(self._acc)
                ois = self._ois
                if len(ois) == self.n:
                    self._oi_sum -= ois[0]  # the append below drops it (deque maxlen=n)
                ois.append(oi)
                self._oi_sum += oi
                self.buckets += 1
                if self.buckets % self.n == 0:  # rounding drift never spans more than n updates
                    self._oi_sum = math.fsum(ois)
                self._fill = 0
                self._acc = 0.0

    # -- reads ---------------------------------------------------------------------------------

    @property
    def value(self) -> float:
        """VPIN in [0, 1]; NaN before the first full bucket. O(1): the sum of the window's OI is
        kept running (exactly re-summed with ``math.fsum`` every ``n`` buckets), and clamped to
        [0, 1] against the last-ulp rounding of that running sum."""
        m = len(self._ois)
        if m == 0:
            return math.nan
        v = self._oi_sum / (m * self.bucket_lots)
        return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)

    @property
    def buckets_in_window(self) -> int:
        return len(self._ois)
