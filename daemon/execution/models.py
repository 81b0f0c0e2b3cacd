"""The swappable models a simulated venue is built from (hftbacktest's ``QueueModel``,
``LatencyModel`` and ``FeeModel``; nkaz001/hftbacktest ``models/queue.rs``, ``models/latency.rs``,
``models/fee.rs``). Each is a small pure object injected into
:class:`~daemon.execution.paper.PaperVenue`; a new model is a new class with the same methods.

Units: sizes in lots (floats where they are estimates), times in exchange ms, prices as floats in
price units (quote per base), fees in quote currency.
"""

from __future__ import annotations

from typing import Protocol


class QueueModel(Protocol):
    """How our place in the queue at a price level moves when the level's visible size changes.

    Our paper order is not in the public book: the visible size at our price is the volume ahead of
    us plus the volume that arrived behind us. Trades at our price consume the volume ahead first
    (the venue does that, the same for every model); a model decides what a size *decrease not
    explained by trades* (a cancel somewhere in the queue) does to the volume ahead."""

    name: str

    def after_depth_change(self, front: float, prev: int, new: int, chg: float) -> float:
        """Volume ahead of us (lots) after the level went from ``prev`` to ``new`` lots, of which
        ``chg = prev - new - traded`` lots are cancels (``chg <= 0``: nothing was cancelled).
        ``front`` is the volume ahead before. The result lies in ``[0, new]``."""
        ...


class RiskAverseQueue:
    """Cancels never advance us: only the clamp ``front <= visible size`` applies (hftbacktest
    ``RiskAdverseQueueModel``). The most pessimistic fill estimate; config name ``conservative``."""

    name = "conservative"

    def after_depth_change(self, front: float, prev: int, new: int, chg: float) -> float:
        return min(front, float(new))


class ProbQueue:
    """Cancels happen behind us with probability ``p = f(back) / (f(back) + f(front))``,
    ``f(x) = x ** power`` (hftbacktest ``ProbQueueModel`` with ``PowerProbQueueFunc``; ``power = 1``
    is its linear ``f(x) = x``). Then ``front' = front - (1 - p) * chg + min(back - p * chg, 0)``,
    clamped to ``[0, new]``. Config names ``prob_power`` (``queue_power``) and ``prob_linear``."""

    def __init__(self, power: float = 2.0) -> None:
        if not power > 0:
            raise ValueError("queue power must be > 0")
        self.power = float(power)
        self.name = "prob_linear" if self.power == 1.0 else "prob_power"

    def after_depth_change(self, front: float, prev: int, new: int, chg: float) -> float:
        if chg <= 0:
            return min(front, float(new))
        back = prev - front
        if front <= 0:
            return min(0.0, float(new))
        n = self.power
        fb = back**n if back > 0 else 0.0
        ff = front**n
        p = fb / (fb + ff) if fb + ff > 0 else 1.0
        est = front - (1.0 - p) * chg + min(back - p * chg, 0.0)
        return max(0.0, min(est, float(new)))


QUEUE_MODELS = ("conservative", "prob_linear", "prob_power")


def queue_model(name: str, power: float = 2.0) -> QueueModel:
    """The queue model a config names (:data:`QUEUE_MODELS`); ``power`` is ``prob_power``'s."""
    if name == "conservative":
        return RiskAverseQueue()
    if name == "prob_linear":
        return ProbQueue(1.0)
    if name == "prob_power":
        return ProbQueue(power)
    raise ValueError(f"queue_model {name!r}: allowed {QUEUE_MODELS}")


class LatencyModel(Protocol):
    """When a request sent at exchange time ``ts_ms`` takes effect at the venue."""

    def entry_ms(self, ts_ms: int) -> int:
        """A new order (or an in-place amend) sent at ``ts_ms`` reaches the book at this time."""
        ...

    def cancel_ms(self, ts_ms: int) -> int:
        """A cancel sent at ``ts_ms`` takes effect at this time (the order can fill until then)."""
        ...


class ConstantLatency:
    """Fixed order-entry and cancel latencies (ms), hftbacktest's ``ConstantLatency``."""

    def __init__(self, entry_ms: int = 20, cancel_ms: int = 20) -> None:
        if entry_ms < 0 or cancel_ms < 0:
            raise ValueError("latencies must be >= 0 ms")
        self.entry = int(entry_ms)
        self.cancel = int(cancel_ms)

    def entry_ms(self, ts_ms: int) -> int:
        return ts_ms + self.entry

    def cancel_ms(self, ts_ms: int) -> int:
        return ts_ms + self.cancel


class FeeModel(Protocol):
    """The fee of a fill in quote currency (negative: a rebate)."""

    def maker_fee(self, price: float, qty: float) -> float:
        """Fee of a passive (maker) fill of ``qty`` base units at ``price``."""
        ...

    def taker_fee(self, price: float, qty: float) -> float:
        """Fee of an aggressive (taker) fill of ``qty`` base units at ``price``."""
        ...


class MakerTakerFees:
    """Fees proportional to traded notional: ``price * qty * rate``; rates are fractions
    (0.0002 = 2 bp), a negative rate is a rebate (hftbacktest ``TradingValueFeeModel``)."""

    def __init__(self, maker: float = 0.0002, taker: float = 0.00055) -> None:
        self.maker = float(maker)
        self.taker = float(taker)

    def maker_fee(self, price: float, qty: float) -> float:
        return price * qty * self.maker

    def taker_fee(self, price: float, qty: float) -> float:
        return price * qty * self.taker


class FeedLatency(Protocol):
    """How long after the exchange stamped an event the strategy acted on it (ms): a decision on
    data stamped ``ts_ms`` reaches the venue this much later, plus the order latency. Live, this
    is the real feed latency; replay and backtest model it."""

    def delay_ms(self, ts_ms: int, recv_ns: int) -> int:
        """Feed latency of the event stamped ``ts_ms`` (exchange ms) received at ``recv_ns``
        (local ns; 0 = unknown)."""
        ...


class ZeroFeed:
    """Decisions act at the data's exchange time (no feed latency): the default for replay and
    backtest, so that results depend only on the recording's content and compare with peers that
    replay exchange time. It flatters: live, quotes go out one feed latency later."""

    name = "zero"

    def delay_ms(self, ts_ms: int, recv_ns: int) -> int:
        return 0


class ConstantFeed:
    """A fixed feed latency (ms)."""

    name = "constant"

    def __init__(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("feed latency must be >= 0 ms")
        self.ms = int(ms)

    def delay_ms(self, ts_ms: int, recv_ns: int) -> int:
        return self.ms


class RecordedFeed:
    """The feed latency as recorded (hftbacktest's ``local_ts``): ``recv - ts`` of each event, less
    the clock offset between the recording machine and the exchange, estimated as the running
    minimum of ``recv - ts`` (so the fastest event seen so far counts as ``base_ms``). What remains
    is the recorded jitter (bursts, slow consumers) on top of ``base_ms``, the one-way latency the
    offset estimate cannot see. Events without a receive stamp get ``base_ms``."""

    name = "recorded"

    def __init__(self, base_ms: int = 0) -> None:
        if base_ms < 0:
            raise ValueError("feed base latency must be >= 0 ms")
        self.base_ms = int(base_ms)
        self._offset_ms: float | None = None

    def delay_ms(self, ts_ms: int, recv_ns: int) -> int:
        if recv_ns <= 0:
            return self.base_ms
        d = recv_ns / 1e6 - ts_ms
        off = self._offset_ms
        if off is None or d < off:
            self._offset_ms = off = d
        return self.base_ms + int(d - off)


FEED_LATENCIES = ("zero", "constant", "recorded")


def feed_latency(name: str, ms: int = 0) -> FeedLatency:
    """The feed-latency model a config names (:data:`FEED_LATENCIES`); ``ms`` is ``constant``'s
    latency and ``recorded``'s base."""
    if name == "zero":
        return ZeroFeed()
    if name == "constant":
        return ConstantFeed(ms)
    if name == "recorded":
        return RecordedFeed(ms)
    raise ValueError(f"feed_latency {name!r}: allowed {FEED_LATENCIES}")
