"""Bounded rolling containers used by the feature state (pure, no clock).

* :class:`TimeWindowSum` -- exact integer sums of values stamped with a time (ms) over the time
  window ``(now - window_ms, now]``. Integer sums never drift, so the incremental value equals a
  from-scratch recomputation exactly.
* :class:`IntRollingMoments` -- mean / sample variance of the last ``n`` integers, exact (integer
  running sums; the variance numerator ``n*S2 - S1**2`` is an exact integer).
* :class:`FloatRollingMoments` -- mean / sample variance of the last ``n`` floats with O(1)
  running sums that are recomputed from the buffer (``math.fsum``) every ``n`` pushes, so
  rounding drift is bounded by ``n`` updates.

Memory is bounded: a time window holds at most the entries of one window; a count window holds
``n`` values.
"""

from __future__ import annotations

import math
from collections import deque

_NEVER = 1 << 62  # later than any time in ms


class TimeWindowSum:
    """Sums of integer columns over the time window ``(now - window_ms, now]``.

    ``push(ts_ms, *values)`` appends one entry (``ts_ms`` must not decrease; the feature state
    stamps events with its monotone clock). ``evict(now_ms)`` drops entries with
    ``ts_ms <= now_ms - window_ms``. ``sums[i]`` is the exact sum of column ``i`` and ``count`` the
    number of entries currently inside. ``expires_ms`` is when the oldest entry leaves (its
    ``ts_ms + window_ms``; a huge value when empty): ``evict(now)`` with ``now < expires_ms`` is a
    no-op, so callers on a hot path test it first.
    """

    __slots__ = ("window_ms", "_q", "sums", "_ncols", "expires_ms")

    def __init__(self, window_ms: int, ncols: int = 1) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be > 0, got {window_ms}")
        self.window_ms = int(window_ms)
        self._q: deque = deque()
        self.sums = [0] * ncols
        self._ncols = ncols
        self.expires_ms = _NEVER

    def push(self, ts_ms: int, *values: int) -> None:
        q = self._q
        if not q:
            self.expires_ms = ts_ms + self.window_ms
        q.append((ts_ms, values))
        s = self.sums
        for i, v in enumerate(values):
            s[i] += v

    def evict(self, now_ms: int) -> None:
        q = self._q
        cutoff = now_ms - self.window_ms
        s = self.sums
        while q and q[0][0] <= cutoff:
            _, values = q.popleft()
            for i, v in enumerate(values):
                s[i] -= v
        self.expires_ms = q[0][0] + self.window_ms if q else _NEVER

    @property
    def count(self) -> int:
        return len(self._q)

    def __len__(self) -> int:
        return len(self._q)


class IntRollingMoments:
    """Exact mean and sample variance (ddof = 1) of the last ``n`` integers pushed."""

    __slots__ = ("n", "_buf", "s1", "s2")

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"window must hold at least 2 values, got {n}")
        self.n = n
        self._buf: deque[int] = deque()
        self.s1 = 0
        self.s2 = 0

    def push(self, x: int) -> None:
        buf = self._buf
        buf.append(x)
        self.s1 += x
        self.s2 += x * x
        if len(buf) > self.n:
            old = buf.popleft()
            self.s1 -= old
            self.s2 -= old * old

    def __len__(self) -> int:
        return len(self._buf)

    def mean(self) -> float:
        m = len(self._buf)
        return self.s1 / m if m else math.nan

    def var(self) -> float:
        """Sample variance (ddof = 1); NaN with fewer than 2 values. Exact up to the final division."""
        m = len(self._buf)
        if m < 2:
            return math.nan
        return (m * self.s2 - self.s1 * self.s1) / (m * (m - 1))

    def std(self) -> float:
        v = self.var()
        return math.sqrt(v) if v == v else math.nan


class FloatRollingMoments:
    """Mean and sample variance (ddof = 1) of the last ``n`` floats pushed.

    O(1) per push with running sums; every ``n`` pushes the sums are recomputed from the buffer with
    ``math.fsum`` so that floating-point drift never accumulates over more than ``n`` updates.
    The variance is computed around the buffer's first element as a shift (``K``) to avoid the
    cancellation of the naive ``E[x^2] - E[x]^2`` formula; ``K`` is refreshed at each recompute.
    """

    __slots__ = ("n", "_buf", "_k", "_s1", "_s2", "_since", "_var", "_mass")

    def __init__(self, n: int) -> None:
        if n < 2:
            raise ValueError(f"window must hold at least 2 values, got {n}")
        self.n = n
        self._buf: deque[float] = deque()
        self._k = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self._since = 0
        self._var: float | None = None
        self._mass = 0.0  # sum of (x - K)^2 added since the last recompute (no cancellation)

    def push(self, x: float) -> None:
        self._var = None
        buf = self._buf
        if not buf:
            self._k = x
        buf.append(x)
        d = x - self._k
        self._s1 += d
        self._s2 += d * d
        self._mass += d * d
        if len(buf) > self.n:
            o = buf.popleft() - self._k
            self._s1 -= o
            self._s2 -= o * o
        self._since += 1
        if self._since >= self.n:
            self._recompute()

    def push_repeat(self, x: float, times: int) -> None:
        """Push ``x`` ``times`` times; O(min(times, n))."""
        for _ in range(min(times, self.n)):
            self.push(x)

    def _recompute(self) -> None:
        buf = self._buf
        self._since = 0
        if not buf:
            self._s1 = self._s2 = self._mass = 0.0
            return
        k = buf[0]
        self._k = k
        self._s1 = math.fsum(x - k for x in buf)
        self._s2 = math.fsum((x - k) * (x - k) for x in buf)
        self._mass = self._s2

    def __len__(self) -> int:
        return len(self._buf)

    def values(self) -> list[float]:
        return list(self._buf)

    def mean(self) -> float:
        m = len(self._buf)
        return self._k + self._s1 / m if m else math.nan

    def var(self) -> float:
        """Sample variance (ddof = 1); NaN with fewer than 2 values.

        The rounding error of the running sums is bounded by ~eps times the mass of squares pushed
        since the last recompute; when the variance numerator is within 1e-6 of that mass (values
        far from the shift, or all equal, e.g. a window of zero returns), the variance is recomputed two-pass from the buffer
        (O(n), cached until the next push), so a constant window gives exactly 0."""
        c = self._var
        if c is not None:
            return c
        m = len(self._buf)
        if m < 2:
            return math.nan
        num = self._s2 - self._s1 * self._s1 / m
        if num <= 1e-6 * (self._mass + self._s2):
            mu = math.fsum(self._buf) / m
            num = math.fsum((x - mu) * (x - mu) for x in self._buf)
        v = num / (m - 1)
        self._var = v
        return v

    def std(self) -> float:
        v = self.var()
        return math.sqrt(v) if v == v else math.nan
