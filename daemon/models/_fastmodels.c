/* mmd fast path for daemon/models: the calibration's A / kappa fit and the adverse classifier's
 * two logits, in C. Each is bit-identical to its pure-Python reference (tests/test_fastmodels.py):
 * the same doubles in the same order, built without FMA contraction.
 *
 * intensity_fit(counts, n, span_s, min_n, min_points, width, weighted) is
 * daemon.models.calibration.intensity_fit_py (the pure-Python reference) operation for operation:
 * the same doubles in the same order, so the results are bit-identical (tests/test_fastmodels.py).
 *
 *   N_0 = n, N_i = N_{i-1} - counts[i-1]   (trades that reached depth d_i = i * width)
 *   points while N_i >= min_n: rate_i = N_i / span_s (per second)
 *   (weighted) least squares of ln rate = ln A - kappa * d   (A-S 2008 eq. 12)
 *
 * Returns (m, A, kappa, r2); with m < min_points nothing is fitted and A, kappa, r2 are NaN.
 *
 * adverse_pair(vals, cols, intercept, z_clip) is the loop of daemon.models.adverse.AdverseModel.
 * predict_py: per feature (mirrored, sign, mean, 1/std, weight), z-scores clipped to +-z_clip,
 * NaN/inf features skipped, then the logistic of each side's sum. Returns (p_bid, p_ask).
 *
 * Pure: no clock, no I/O.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

static PyObject *intensity_fit(PyObject *mod, PyObject *args) {
    PyObject *counts;
    long long n, min_n;
    Py_ssize_t min_points;
    double span_s, width;
    int weighted;
    if (!PyArg_ParseTuple(args, "OLdLndp:intensity_fit", &counts, &n, &span_s, &min_n, &min_points, &width, &weighted))
        return NULL;
    PyObject *fast = PySequence_Fast(counts, "counts must be a sequence of ints");
    if (fast == NULL) return NULL;
    Py_ssize_t nb = PySequence_Fast_GET_SIZE(fast);
    /* as many points as buckets, however many the config allows (the Python fit has no limit) */
    double *buf = PyMem_Malloc(sizeof(double) * 3 * (size_t)(nb > 0 ? nb : 1));
    if (buf == NULL) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    double *x = buf, *y = buf + (nb > 0 ? nb : 1), *w = buf + 2 * (nb > 0 ? nb : 1);
    Py_ssize_t m = 0;
    long long cum = n;
    for (Py_ssize_t i = 0; i < nb; i++) {
        if (i) {
            long long c = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i - 1));
            if (c == -1 && PyErr_Occurred()) {
                Py_DECREF(fast);
                PyMem_Free(buf);
                return NULL;
            }
            cum -= c;
        }
        if (cum < min_n) break;
        double rate = (double)cum / span_s;
        x[m] = (double)i * width;
        y[m] = log(rate);
        w[m] = weighted ? rate * span_s : 1.0;
        m++;
    }
    Py_DECREF(fast);
    if (m < min_points || m < 2) {
        PyMem_Free(buf);
        return Py_BuildValue("(nddd)", m, NAN, NAN, NAN);
    }
    double sw = 0.0, sx = 0.0, sy = 0.0;
    for (Py_ssize_t i = 0; i < m; i++) sw += w[i];
    if (!(sw > 0)) {
        PyMem_Free(buf);
        PyErr_SetString(PyExc_ValueError, "weights must sum to a positive number");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < m; i++) sx += w[i] * x[i];
    for (Py_ssize_t i = 0; i < m; i++) sy += w[i] * y[i];
    double mx = sx / sw, my = sy / sw;
    double sxx = 0.0, sxy = 0.0, syy = 0.0;
    for (Py_ssize_t i = 0; i < m; i++) {
        double dx = x[i] - mx, dy = y[i] - my, wdx = w[i] * dx;
        sxx += wdx * dx;
        sxy += wdx * dy;
        syy += w[i] * dy * dy;
    }
    PyMem_Free(buf);
    if (sxx <= 0.0) {
        PyErr_SetString(PyExc_ValueError, "depths must not all be equal");
        return NULL;
    }
    double slope = sxy / sxx;
    double intercept = my - slope * mx;
    double ss_res = syy - slope * sxy;
    double r2 = 0.0;
    if (!(syy <= 0.0)) {
        double v = 1.0 - ss_res / syy;
        r2 = v > 0.0 ? v : 0.0;
    }
    return Py_BuildValue("(nddd)", m, exp(intercept), -slope, r2);
}

static double sig1(double a) {
    if (a >= 0) return 1.0 / (1.0 + exp(-a));
    double e = exp(a);
    return e / (1.0 + e);
}

static PyObject *adverse_pair(PyObject *mod, PyObject *args) {
    PyObject *vals, *cols;
    double a_bid, hi;
    if (!PyArg_ParseTuple(args, "OOdd:adverse_pair", &vals, &cols, &a_bid, &hi)) return NULL;
    if (!PyTuple_Check(vals) || !PyTuple_Check(cols) || PyTuple_GET_SIZE(vals) != PyTuple_GET_SIZE(cols)) {
        PyErr_SetString(PyExc_TypeError, "adverse_pair needs two tuples of equal length");
        return NULL;
    }
    double lo = -hi, a_ask = a_bid;
    Py_ssize_t n = PyTuple_GET_SIZE(vals);
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(PyTuple_GET_ITEM(vals, i));
        if (v == -1.0 && PyErr_Occurred()) return NULL;
        if (!isfinite(v)) continue; /* NaN (or inf) -> the training mean (z = 0) on both sides */
        PyObject *c = PyTuple_GET_ITEM(cols, i);
        if (!PyTuple_Check(c) || PyTuple_GET_SIZE(c) != 5) {
            PyErr_SetString(PyExc_TypeError, "a column is (mirrored, sign, mean, 1/std, weight)");
            return NULL;
        }
        int mirrored = PyObject_IsTrue(PyTuple_GET_ITEM(c, 0));
        double sg = PyFloat_AsDouble(PyTuple_GET_ITEM(c, 1));
        double m = PyFloat_AsDouble(PyTuple_GET_ITEM(c, 2));
        double inv = PyFloat_AsDouble(PyTuple_GET_ITEM(c, 3));
        double w = PyFloat_AsDouble(PyTuple_GET_ITEM(c, 4));
        if (mirrored < 0 || PyErr_Occurred()) return NULL;
        double z = (v - m) * inv;
        double t = w * (z > hi ? hi : z < lo ? lo : z);
        a_ask += t;
        if (mirrored) {
            z = (sg * v - m) * inv;
            t = w * (z > hi ? hi : z < lo ? lo : z);
        }
        a_bid += t;
    }
    return Py_BuildValue("(dd)", sig1(a_bid), sig1(a_ask));
}

static PyMethodDef methods[] = {
    {"adverse_pair", adverse_pair, METH_VARARGS,
     "adverse_pair(vals, cols, intercept, z_clip) -> (p_bid, p_ask)"},
    {"intensity_fit", intensity_fit, METH_VARARGS,
     "intensity_fit(counts, n, span_s, min_n, min_points, width, weighted) -> (m, A, kappa, r2)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastmodels", "C accelerators of daemon.models (see the Python references).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastmodels(void) { return PyModule_Create(&module); }
