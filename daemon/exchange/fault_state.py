"""The faults of one exchange run: when each fault of the :class:`~daemon.exchange.faults.FaultPlan`
is due, the one-shot faults injected through ``ExchangeServer.inject`` that wait for their moment,
and what was injected so far (``injected[kind]``, the kinds and counting rules of
:mod:`daemon.exchange.faults`).

:class:`FaultState` only decides and counts; the parts that carry a fault out ask it: the replay
(gap, crossed, malformed, stall), the websocket hub (drop, reject, pongs during a stall) and the
REST middleware (``rest_*``). Each fault fired is logged as ``fault_injected`` (rate limited per
fault, except the stall which is logged every time).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from daemon.exchange.faults import MALFORMED_KINDS, REST_FAULTS, FaultPlan
from daemon.logging import RateLimited, get_logger

log = get_logger("daemon.exchange")


class FaultState:
    """Fault bookkeeping for one run of ``plan`` (see the module docstring)."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.injected: dict[str, int] = defaultdict(int)
        self.book_deltas_sent = 0  #: book deltas that had at least one subscriber (gap/crossed counting)
        self._stall_until = 0.0  #: time.monotonic() seconds
        self._stall_pongs = True
        self._stall_done = False
        self._pending_gap = 0
        self._pending_crossed = 0
        self._crossed_done = False
        self._pending_malformed: list[str] = []
        self._malformed_i = 0  #: position in the plan's malformed_kinds cycle
        self._malformed_n = 0  #: malformed frames built so far (makes their ids unique)
        self._rest_fault: str | None = str(plan.rest_fault) if plan.rest_fault else None
        self._rest_fault_left = plan.rest_fault_count if self._rest_fault else 0
        self.rest_slow_seconds = plan.rest_slow_seconds
        self._drops_done = 0
        self._rl = RateLimited(5, 10.0)

    def inject(self, kind: str, **kw: Any) -> None:
        """Arm a one-shot fault (every kind of ``ExchangeServer.inject`` but ``"drop"``, which the hub
        carries out at once)."""
        if kind == "gap":
            self._pending_gap += 1
        elif kind == "crossed":
            self._pending_crossed += 1
        elif kind == "malformed":
            mk = kw.get("malformed_kind", "invalid_json")
            if mk not in MALFORMED_KINDS:
                raise ValueError(f"unknown malformed kind {mk!r}")
            self._pending_malformed.append(mk)
        elif kind == "stall":
            self.start_stall(float(kw.get("seconds", 5.0)), bool(kw.get("pongs", True)))
        elif kind == "rest":
            fault = str(kw.get("fault", "10006"))
            if fault not in REST_FAULTS:
                raise ValueError(f"rest fault must be one of {REST_FAULTS}")
            self._rest_fault = fault
            self._rest_fault_left = int(kw.get("count", 1))
            self.rest_slow_seconds = float(kw.get("seconds", self.plan.rest_slow_seconds))
        elif kind == "reject":
            self.plan.reject_topics.add(str(kw["topic"]))
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def _record(self, fault: str, **kw: Any) -> None:
        self.injected[fault] += 1
        ok, supp = self._rl.allow(fault)
        if ok:
            log.info("fault_injected", fault=fault, suppressed=supp, **kw)

    # ------------------------------------------------------------------ stall (the replay clock stops)
    def start_stall(self, seconds: float, pongs: bool) -> None:
        """Stop all data for ``seconds`` from now; ``pongs=False`` also withholds pongs."""
        self._stall_until = time.monotonic() + seconds
        self._stall_pongs = pongs
        self.injected["stall"] += 1
        log.info("fault_injected", fault="stall", seconds=seconds, pongs=pongs)

    def stall_remaining(self) -> float:
        """Seconds left of the current stall (<= 0: not stalled)."""
        return self._stall_until - time.monotonic()

    @property
    def stalled(self) -> bool:
        return self._stall_until > time.monotonic()

    def pongs_withheld(self) -> bool:
        return self.stalled and not self._stall_pongs

    def after_frame(self, n: int) -> None:
        """The replay broadcast its ``n``-th recording frame: start the plan's stall when due (once)."""
        fp = self.plan
        if fp.stall_after is not None and not self._stall_done and n >= fp.stall_after:
            self._stall_done = True
            self.start_stall(fp.stall_seconds, fp.stall_pongs)

    # ------------------------------------------------------------------ frames on the websocket
    def malformed_due(self, n: int) -> list[tuple[str, int]]:
        """Malformed frames to insert before the ``n``-th recording frame: ``(kind, unique n)``, the
        plan's periodic one after the injected ones. Count each one sent with :meth:`malformed_sent`."""
        fp = self.plan
        if fp.malformed_every and n % fp.malformed_every == 0:
            kinds = fp.malformed_kinds
            self._pending_malformed.append(kinds[self._malformed_i % len(kinds)])
            self._malformed_i += 1
        kinds_due, self._pending_malformed = self._pending_malformed, []
        out = []
        for kind in kinds_due:
            self._malformed_n += 1
            out.append((kind, self._malformed_n))
        return out

    def malformed_sent(self, kind: str) -> None:
        self._record("malformed", kind=kind)

    def book_delta(self, topic: str, u: int) -> str | None:
        """Called for every book delta that has subscribers: ``"gap"`` (withhold it), ``"crossed"``
        (send it crossed) or ``None`` (send it as it is). A gap or crossed is counted here."""
        fp = self.plan
        self.book_deltas_sent += 1
        k = self.book_deltas_sent
        if self._pending_gap or (fp.gap_every and k % fp.gap_every == 0):
            if self._pending_gap:
                self._pending_gap -= 1
            self._record("gap", topic=topic, u=u)
            return "gap"
        if self._pending_crossed or (fp.crossed_after is not None and not self._crossed_done
                                     and k > fp.crossed_after):
            if self._pending_crossed:
                self._pending_crossed -= 1
            else:
                self._crossed_done = True
            self._record("crossed", topic=topic, u=u)
            return "crossed"
        return None

    # ------------------------------------------------------------------ connections
    def drop_due(self, data_sent: int) -> bool:
        """A connection was sent its ``data_sent``-th data frame: abort it now (``drop_after``)?"""
        fp = self.plan
        return (fp.drop_after is not None and data_sent >= fp.drop_after
                and (fp.drop_repeat or self._drops_done == 0))

    def dropped(self, conn_id: str, data_sent: int) -> None:
        self._drops_done += 1
        self._record("drop", conn_id=conn_id, data_sent=data_sent)

    def rejects(self, topic: str) -> bool:
        """Must a subscription to ``topic`` be refused? (counted when it is)"""
        if topic not in self.plan.reject_topics:
            return False
        self._record("reject", topic=topic)
        return True

    # ------------------------------------------------------------------ REST
    def take_rest_fault(self, path: str) -> str | None:
        """The REST fault (one of REST_FAULTS) this request gets instead of its answer, if any."""
        if not (self._rest_fault and self._rest_fault_left > 0):
            return None
        fault = self._rest_fault
        self._rest_fault_left -= 1
        self._record(f"rest_{fault}", path=path)
        return fault
