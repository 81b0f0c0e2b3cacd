"""daemon/wiring.py: the config sections reach the features and models as their own plain parameter
types, field for field, with the same defaults."""

from __future__ import annotations

import dataclasses

import pytest

from daemon import wiring
from daemon.config import Settings, load_settings
from daemon.core.instrument import btcusdt_linear
from daemon.features.state import FeatureParams
from daemon.models.calibration import CalibrationParams
from daemon.models.inventory import InventoryParams
from daemon.models.quoting import AdverseParams, QuotingParams

#: parameter type -> (config section, the wiring function that builds it from Settings)
PARAMS = {
    FeatureParams: ("features", wiring.feature_params),
    CalibrationParams: ("calibration", wiring.calibration_params),
    InventoryParams: ("inventory", wiring.inventory_params),
    QuotingParams: ("quoter", wiring.quoting_params),
    AdverseParams: ("adverse", wiring.adverse_params),
}
ALL_FEATURES = {f.name for f in dataclasses.fields(FeatureParams)}
ALL_CALIBRATION = {f.name for f in dataclasses.fields(CalibrationParams)}


@pytest.mark.parametrize("cls", list(PARAMS), ids=lambda c: c.__name__)
def test_params_are_frozen_slots_dataclasses_named_like_their_config_section(cls):
    section, _ = PARAMS[cls]
    names = [f.name for f in dataclasses.fields(cls)]
    config_fields = type(getattr(Settings(), section)).model_fields
    assert set(names) <= set(config_fields), set(names) - set(config_fields)
    p = cls()
    assert dataclasses.is_dataclass(cls) and not hasattr(p, "__dict__")  # slots (or a native class, compiled)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(p, names[0], getattr(p, names[0]))


@pytest.mark.parametrize("cls", list(PARAMS), ids=lambda c: c.__name__)
def test_param_defaults_are_the_config_defaults(cls):
    _, build = PARAMS[cls]
    assert build(Settings()) == cls()


def test_features_and_calibration_take_every_field_of_their_section():
    s = Settings()
    assert ALL_FEATURES == set(type(s.features).model_fields)
    assert ALL_CALIBRATION == set(type(s.calibration).model_fields)


def test_wiring_passes_configured_values_through():
    s = load_settings(overrides={
        "features": {"top_k": 3, "vpin_bar_s": 2.0},
        "calibration": {"window_s": 60.0, "A_bounds": [0.5, 50.0], "fit_weighting": "none"},
        "inventory": {"max_position": 0.02, "penalty": "asymmetric", "vol_ref": 3.0},
        "quoter": {"order_size": 0.002, "min_spread_ticks": 4, "horizon_mode": "session", "horizon_s": 60.0},
        "adverse": {"threshold": 0.7, "action": "pull", "widen_factor": 3.0},
    })
    assert wiring.feature_params(s) == FeatureParams(top_k=3, vpin_bar_s=2.0)
    assert wiring.calibration_params(s) == CalibrationParams(window_s=60.0, A_bounds=(0.5, 50.0), fit_weighting="none")
    assert wiring.inventory_params(s) == InventoryParams(max_position=0.02, penalty="asymmetric", vol_ref=3.0)
    assert wiring.quoting_params(s) == QuotingParams(order_size=0.002, min_spread_ticks=4, horizon_s=60.0,
                                                     horizon_mode="session")
    assert wiring.adverse_params(s, model_threshold=0.1) == AdverseParams(0.7, "pull", 3.0)  # configured wins
    pipe = wiring.quoting_pipeline(s, btcusdt_linear())
    assert pipe.params == wiring.quoting_params(s) and pipe.inventory.params == wiring.inventory_params(s)
    assert pipe.session is not None and pipe.min_spread_ticks == 4 and pipe.order_lots == 2


def test_adverse_threshold_falls_back_to_the_model_s_own():
    s = Settings()
    assert wiring.adverse_params(s).threshold is None  # no model, no configured threshold: gate off
    assert wiring.adverse_params(s, model_threshold=0.62).threshold == 0.62
    assert wiring.quoting_pipeline(s, btcusdt_linear(), model_threshold=0.62).adverse.threshold == 0.62


def test_hedge_ratios_from_the_inventory_section():
    assert wiring.hedge_ratios(Settings()) is None
    h = wiring.hedge_ratios(load_settings(overrides={"inventory": {"hedge_symbols": ["ETHUSDT", "BTCUSDT"],
                                                                   "hedge_window": 50}}))
    assert h is not None and h.reference == "ETHUSDT" and h.symbols == ["BTCUSDT"] and h.window == 50
    h = wiring.hedge_ratios(load_settings(overrides={"inventory": {"hedge_symbols": ["ETHUSDT"],
                                                                   "hedge_reference": "BTCUSDT"}}))
    assert h is not None and h.reference == "BTCUSDT" and h.symbols == ["ETHUSDT"]
