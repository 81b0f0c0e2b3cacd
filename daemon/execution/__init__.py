"""Execution: where quotes become orders and orders become fills.

* :mod:`daemon.execution.protocol` -- :class:`ExecutionVenue`, the seam between the strategy and
  whatever executes its quotes (the paper venue today; a Bybit private-API venue later), and the
  :class:`OrderEvent` record every venue emits;
* :mod:`daemon.execution.models` -- the swappable simulation models a simulated venue is built
  from: queue position (:class:`RiskAverseQueue`, :class:`ProbQueue`), latency
  (:class:`ConstantLatency`) and fees (:class:`MakerTakerFees`), after hftbacktest's
  ``QueueModel`` / ``LatencyModel`` / ``FeeModel``;
* :mod:`daemon.execution.paper` -- :class:`PaperVenue`, the queue-aware simulated venue.

Pure: no clock, no I/O. Position, cash, PnL and funding are the account's
(:class:`daemon.paper.inventory.Inventory`), never a venue's.
"""
