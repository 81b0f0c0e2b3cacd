"""From the validated configuration (:class:`daemon.config.Settings`) to the plain parameters the
features and models take, and to the execution venue's models. The one place that reads config
sections for them: ``daemon/features/``, ``daemon/models/`` and ``daemon/execution/`` import nothing
from ``daemon.config`` (nor pydantic), so they stay pure code that a test, a benchmark or a notebook
builds from plain values.

Each parameter type has the field names of its config section (or of the part of it that it uses)
and the same defaults (``tests/test_wiring.py`` checks both; ``tests/test_layers.py`` checks the
imports).

Quoter kinds (``[quoter] kind``, :func:`make_quoter`):

* ``avellaneda``: :class:`daemon.models.avellaneda.AvellanedaStoikov` with ``gamma``, ``horizon_s``
  and ``horizon_mode`` (``rolling``: ``T - t = horizon_s`` always; ``session``: counts down, see
  :class:`daemon.models.quoting.SessionClock`);
* ``glft``: :class:`daemon.models.glft.GLFT` with ``gamma`` (``xi = gamma``, order size ``Delta = 1``
  because ``q`` is already in order-size units);
* ``rl``: ``daemon.models.rl.RLQuoter.load(rl_policy, gamma=gamma, horizon_s=horizon_s)`` (the live
  ``gamma`` and horizon scale the policy's unit-free actions), imported lazily so the RL code (and
  its dependencies) is only loaded when used.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, TypeVar

from daemon.config import Settings, VenueConfig
from daemon.core.instrument import Instrument
from daemon.execution import models as execution_models
from daemon.execution.models import ConstantLatency, FeedLatency, MakerTakerFees, queue_model
from daemon.execution.paper import PaperVenue
from daemon.features.state import FeatureParams
from daemon.models.base import Quoter
from daemon.models.calibration import CalibrationParams
from daemon.models.inventory import HedgeRatios, InventoryParams
from daemon.models.quoting import AdverseParams, QuotingParams, QuotingPipeline

P = TypeVar("P")


def params_from(cls: type[P], section: Any, **override: Any) -> P:
    """``cls`` (a parameter dataclass) filled from the config ``section``'s fields of the same
    names; ``override`` replaces some of them."""
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values.update(override)
    return cls(**values)


def feature_params(settings: Settings) -> FeatureParams:
    """``[features]`` for :class:`daemon.features.state.FeatureState`."""
    return params_from(FeatureParams, settings.features)


def calibration_params(settings: Settings) -> CalibrationParams:
    """``[calibration]`` for :class:`daemon.models.calibration.Calibrator`."""
    return params_from(CalibrationParams, settings.calibration)


def inventory_params(settings: Settings) -> InventoryParams:
    """The position limits of ``[inventory]`` for :class:`daemon.models.inventory.InventoryControl`."""
    return params_from(InventoryParams, settings.inventory)


def quoting_params(settings: Settings) -> QuotingParams:
    """What :class:`daemon.models.quoting.QuotingPipeline` needs from ``[quoter]``."""
    return params_from(QuotingParams, settings.quoter)


def adverse_params(settings: Settings, model_threshold: float | None = None) -> AdverseParams:
    """``[adverse]``'s gate. Without a configured ``threshold`` the gate uses ``model_threshold``
    (the loaded adverse model's own; ``None``, no model: the gate is off)."""
    threshold = settings.adverse.threshold
    return params_from(AdverseParams, settings.adverse,
                       threshold=threshold if threshold is not None else model_threshold)


def quoting_pipeline(settings: Settings, instrument: Instrument, quoter: Quoter | None = None,
                     model_threshold: float | None = None) -> QuotingPipeline:
    """The per-symbol :class:`QuotingPipeline` (quoter from :func:`make_quoter` unless given;
    ``model_threshold`` as in :func:`adverse_params`)."""
    if quoter is None:
        quoter = make_quoter(settings)
    return QuotingPipeline(quoter, instrument, quoting_params(settings), inventory_params(settings),
                           adverse_params(settings, model_threshold))


def hedge_ratios(settings: Settings) -> HedgeRatios | None:
    """:class:`HedgeRatios` of ``[inventory] hedge_symbols`` on ``hedge_reference`` (default the first
    hedge symbol) over ``hedge_window`` samples; ``None`` when no hedge symbols are configured."""
    inv = settings.inventory
    if not inv.hedge_symbols:
        return None
    ref = inv.hedge_reference or inv.hedge_symbols[0]
    return HedgeRatios(ref, list(inv.hedge_symbols), inv.hedge_window)


class QuoterBuildError(RuntimeError):
    """The configured quoter cannot be built (one line: what and why)."""


def make_quoter(settings: Settings) -> Quoter:
    """The quoter named by ``settings.quoter.kind``."""
    qc = settings.quoter
    kind = qc.kind
    if kind == "avellaneda":
        from daemon.models.avellaneda import AvellanedaStoikov

        return AvellanedaStoikov(qc.gamma, horizon_s=qc.horizon_s, mode=qc.horizon_mode)
    if kind == "glft":
        from daemon.models.glft import GLFT

        return GLFT(qc.gamma)
    if kind == "rl":
        if not qc.rl_policy:
            raise QuoterBuildError("quoter.kind = 'rl' needs quoter.rl_policy (a policy file from mmd train-rl)")
        try:
            mod = importlib.import_module("daemon.models.rl")
        except ModuleNotFoundError as e:
            if e.name in ("daemon.models.rl", "daemon.models"):
                raise QuoterBuildError(
                    "quoter.kind = 'rl' but the RL quoter module daemon.models.rl is not available in this build"
                ) from None
            raise QuoterBuildError(f"quoter.kind = 'rl': daemon.models.rl needs a missing module: {e.name}") from e
        cls = getattr(mod, "RLQuoter", None)
        if cls is None or not hasattr(cls, "load"):
            raise QuoterBuildError("daemon.models.rl has no RLQuoter.load(path)")
        try:
            return cls.load(qc.rl_policy, gamma=qc.gamma, horizon_s=qc.horizon_s)
        except FileNotFoundError:
            raise QuoterBuildError(f"quoter.rl_policy {qc.rl_policy!r}: file not found") from None
        except (ValueError, KeyError, TypeError) as e:
            # the RL module's PolicyLoadError (a ValueError) already names the file and the problem
            raise QuoterBuildError(f"quoter.rl_policy: {e}") from e
    raise QuoterBuildError(f"quoter.kind {kind!r}: allowed 'avellaneda', 'glft', 'rl'")


def paper_venue(cfg: VenueConfig, instrument: Instrument, next_order_n: int = 1) -> PaperVenue:
    """The paper venue ``[venue]`` describes: its queue, latency and fee models."""
    return PaperVenue(
        instrument,
        queue=queue_model(cfg.queue_model, cfg.queue_power),
        latency=ConstantLatency(cfg.entry_latency_ms, cfg.cancel_latency_ms),
        fees=MakerTakerFees(cfg.maker_fee),
        next_order_n=next_order_n,
    )


def feed_latency(cfg: VenueConfig) -> FeedLatency:
    """The feed-latency model of ``[venue] feed_latency`` / ``feed_latency_ms``."""
    return execution_models.feed_latency(cfg.feed_latency, cfg.feed_latency_ms)
