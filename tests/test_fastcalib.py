"""The C A/kappa fit (daemon/models/_fastcalib.c) is bit-identical to the Python reference
(`intensity_fit_py`): same points, same doubles, same errors."""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.models import calibration as calmod
from daemon.models.calibration import intensity_fit_py

try:
    from daemon.models._fastcalib import intensity_fit as c_fit
except ImportError:  # pragma: no cover - only without a compiler
    c_fit = None

pytestmark = pytest.mark.skipif(c_fit is None and os.environ.get("MMD_PURE_PYTHON", "") not in ("", "0"),
                                reason="MMD_PURE_PYTHON set")


def test_the_c_fit_is_built_and_used():
    assert c_fit is not None, "daemon.models._fastcalib is not built: `pip install -e .` needs a C compiler"
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
