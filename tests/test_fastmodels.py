"""The C accelerators of daemon/models (daemon/models/_fastmodels.c) are bit-identical to their
Python references: the A/kappa fit (`intensity_fit_py`) and the adverse classifier's logits
(`AdverseModel.predict_py`)."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.models import calibration as calmod
from daemon.models.calibration import intensity_fit_py

try:
    from daemon.models._fastmodels import intensity_fit as c_fit
except ImportError:  # pragma: no cover - only without a compiler
    c_fit = None

pytestmark = pytest.mark.skipif(c_fit is None and os.environ.get("MMD_PURE_PYTHON", "") not in ("", "0"),
                                reason="MMD_PURE_PYTHON set")


def test_the_c_fit_is_built_and_used():
    assert c_fit is not None, "daemon.models._fastmodels is not built: `pip install -e .` needs a C compiler"
    if os.environ.get("MMD_PURE_PYTHON", "") in ("", "0"):
        assert calmod.intensity_fit is c_fit


def _same(a, b):
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
        assert (math.isnan(x) and math.isnan(y)) or x == y, (a, b)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.integers(0, 500), min_size=0, max_size=300),
    st.integers(0, 200),
    st.floats(0.001, 1e5),
    st.integers(1, 20),
    st.integers(2, 10),
    st.sampled_from([0.1, 0.5, 0.01, 1e-7, 3.0]),
    st.booleans(),
)
def test_c_fit_equals_python_fit(counts, extra, span_s, min_n, min_points, width, weighted):
    n = sum(counts) + extra
    _same(c_fit(counts, n, span_s, min_n, min_points, width, weighted),
          intensity_fit_py(counts, n, span_s, min_n, min_points, width, weighted))


def test_c_fit_on_poisson_like_counts():
    # counts decaying like exp(-kappa d): the realistic case, with long tails
    counts = [int(1000 * math.exp(-0.05 * i)) for i in range(200)]
    for weighted in (True, False):
        a = c_fit(counts, sum(counts), 300.0, 5, 3, 0.1, weighted)
        _same(a, intensity_fit_py(counts, sum(counts), 300.0, 5, 3, 0.1, weighted))
        assert a[0] > 50 and a[2] > 0 and a[3] > 0.9


# -- the adverse classifier's logits -------------------------------------------------------------


def _model():
    from daemon.models.adverse import AdverseModel
    from daemon.recording import bundled_adverse_model

    return AdverseModel.load(str(bundled_adverse_model()))


def test_c_predict_equals_python_predict_over_the_recording():
    import gzip

    from daemon.bybit.messages import FrameParser
    from daemon.core.book import OrderBook
    from daemon.core.events import BookUpdate
    from daemon.core.instrument import btcusdt_linear
    from daemon.features.state import FeatureState
    from daemon.recording import bundled_recording

    model = _model()
    inst = btcusdt_linear()
    parser = FrameParser({"BTCUSDT": inst})
    book = OrderBook("BTCUSDT", 50)
    fs = FeatureState(inst)
    checked = 0
    for line in gzip.open(bundled_recording(), "rb"):
        for ev in parser.parse(line.split(b" ", 1)[1], 0):
            if type(ev) is BookUpdate:
                if ev.depth != 50:
                    continue
                book.apply(ev)
                if book.live:
                    fs.on_book(book, ev)
                    got = model.predict(fs)
                    assert got == model.predict_py(fs)
                    checked += 1
            else:
                fs.on_trade(ev)
    assert checked > 6000


value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6),
                  st.floats(-1e6, 1e6))


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_c_predict_equals_python_predict_on_any_values(data):
    model = _model()
    vals = {n: data.draw(value) for n in model.feature_names}
    assert model.predict(vals) == model.predict_py(vals)


def test_c_fit_takes_as_many_buckets_as_the_config_allows():
    """[calibration] max_depth_ticks allows 100,000 one-tick buckets; the C fit used to refuse more
    than 4,096 with a ValueError the calibrator did not catch (the Python fit has no limit). The
    two must agree on every input the configuration admits."""
    counts = [1] * 100_000  # one trade per bucket: every bucket is a point
    for weighted in (True, False):
        _same(c_fit(counts, len(counts) + 5, 300.0, 1, 3, 0.1, weighted),
              intensity_fit_py(counts, len(counts) + 5, 300.0, 1, 3, 0.1, weighted))
    _same(c_fit([], 0, 1.0, 1, 2, 0.1, True), intensity_fit_py([], 0, 1.0, 1, 2, 0.1, True))
