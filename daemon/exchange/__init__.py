"""Embedded Bybit-V5-compatible exchange (public REST + websocket) replaying a recording, with fault
injection. See :mod:`daemon.exchange.server` (``ExchangeServer``, composing the parts below, and
``ExchangeThread``), :mod:`daemon.exchange.pacing` (the replay clock), :mod:`daemon.exchange.hub`
(websocket connections and subscriptions), :mod:`daemon.exchange.rest` (the REST endpoints),
:mod:`daemon.exchange.faults` (``FaultPlan``, malformed frames) and :mod:`daemon.exchange.fault_state`
(a run's fault bookkeeping), :mod:`daemon.exchange.market` (the exchange's own, deliberately simple
market state), :mod:`daemon.exchange.recording` and :mod:`daemon.exchange.synth` (recorded and
synthetic streams); its command line, ``mmd exchange``, is :mod:`daemon.commands.exchange`.
Exports are lazy so importing a submodule stays cheap."""

from __future__ import annotations

from typing import Any

__all__ = ["ExchangeServer", "ExchangeThread", "FaultPlan", "load_recording", "write_synth"]


def __getattr__(name: str) -> Any:
    if name in ("ExchangeServer", "ExchangeThread"):
        from daemon.exchange import server

        return getattr(server, name)
    if name == "FaultPlan":
        from daemon.exchange.faults import FaultPlan

        return FaultPlan
    if name == "load_recording":
        from daemon.exchange.recording import load_recording

        return load_recording
    if name == "write_synth":
        from daemon.exchange.synth import write_synth

        return write_synth
    raise AttributeError(name)
