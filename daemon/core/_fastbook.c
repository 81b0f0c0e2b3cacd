/* mmd fast path: the verified order book and the Bybit orderbook-frame scanner, in C.
 *
 * This is an optional accelerator for two pure-Python reference implementations, which stay the
 * specification and the fallback:
 *
 *   OrderBook  == daemon.core.book.PyOrderBook   (same API, same state machine, same results)
 *   Scanner    -> daemon.bybit.messages.FrameParser's msgspec path for orderbook and publicTrade frames
 *
 * Prices are int ticks and sizes int lots, held as int64 (the grid parser refuses values at or
 * above 2**62, see daemon/core/instrument.py). A book side is one sorted array of (key, size)
 * where key = -price for bids and price for asks, so both ascend and index 0 is the best level;
 * a delta costs a binary search plus a memmove per added/removed level.
 *
 * The scanner reads one frame (bytes or str) and returns [BookUpdate] (bids/asks a packed Levels
 * sequence) or [Trade, ...], or None when the frame is anything but a plain, valid orderbook or
 * publicTrade frame of a configured symbol (other topics, escapes, non-ASCII, duplicate keys, odd numbers, off-grid or
 * out-of-range values, bad JSON...). None means "not mine": the caller then runs the general
 * msgspec parser, which decodes or classifies the frame exactly as before. The scanner never
 * accepts a frame that the general parser would reject, and gives the same event for every frame
 * it accepts (tests/test_fastbook.py checks both over the recording and fuzzed frames).
 *
 * No clock, no I/O, no allocation on the hot path beyond the result objects.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    int64_t k; /* key: -price (bids) or price (asks), ticks */
    int64_t s; /* size, lots */
} Level;

#define VALUE_LIMIT ((int64_t)1 << 62)

/* ------------------------------------------------------------------------------------------ */
/* Levels: an immutable packed sequence of (price, size) tuples                               */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_VAR_HEAD
    int64_t v[1]; /* 2 * ob_size ints: price, size, price, size, ... */
} LevelsObject;

static PyTypeObject LevelsType;

static LevelsObject *levels_new(Py_ssize_t n, const int64_t *src) {
    LevelsObject *o = PyObject_NewVar(LevelsObject, &LevelsType, n);
    if (o == NULL) return NULL;
    if (n) memcpy(o->v, src, (size_t)n * 2 * sizeof(int64_t));
    return o;
}

static Py_ssize_t levels_len(LevelsObject *self) { return Py_SIZE(self); }

static PyObject *levels_item(LevelsObject *self, Py_ssize_t i) {
    if (i < 0 || i >= Py_SIZE(self)) {
        PyErr_SetString(PyExc_IndexError, "Levels index out of range");
        return NULL;
    }
    return Py_BuildValue("(LL)", (long long)self->v[2 * i], (long long)self->v[2 * i + 1]);
}

static PyObject *levels_as_list(LevelsObject *self) {
    Py_ssize_t n = Py_SIZE(self);
    PyObject *l = PyList_New(n);
    if (l == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = levels_item(self, i);
        if (t == NULL) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, t);
    }
    return l;
}

static PyObject *levels_richcompare(PyObject *a, PyObject *b, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    PyObject *la = PyObject_TypeCheck(a, &LevelsType) ? levels_as_list((LevelsObject *)a) : PySequence_List(a);
    if (la == NULL) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *lb = PyObject_TypeCheck(b, &LevelsType) ? levels_as_list((LevelsObject *)b) : PySequence_List(b);
    if (lb == NULL) {
        PyErr_Clear();
        Py_DECREF(la);
        Py_RETURN_NOTIMPLEMENTED;
    }
    /* compare element-wise as tuples (a list of lists equals a list of tuples here) */
    Py_ssize_t n = PyList_GET_SIZE(la);
    int eq = n == PyList_GET_SIZE(lb);
    for (Py_ssize_t i = 0; eq && i < n; i++) {
        PyObject *x = PySequence_Tuple(PyList_GET_ITEM(la, i));
        PyObject *y = PySequence_Tuple(PyList_GET_ITEM(lb, i));
        if (x == NULL || y == NULL) {
            Py_XDECREF(x);
            Py_XDECREF(y);
            PyErr_Clear();
            eq = 0;
            break;
        }
        int r = PyObject_RichCompareBool(x, y, Py_EQ);
        Py_DECREF(x);
        Py_DECREF(y);
        if (r < 0) {
            Py_DECREF(la);
            Py_DECREF(lb);
            return NULL;
        }
        eq = r;
    }
    Py_DECREF(la);
    Py_DECREF(lb);
    if (op == Py_NE) eq = !eq;
    return PyBool_FromLong(eq);
}

static PyObject *levels_repr(LevelsObject *self) {
    PyObject *l = levels_as_list(self);
    if (l == NULL) return NULL;
    PyObject *r = PyObject_Repr(l);
    Py_DECREF(l);
    return r;
}

static PyObject *levels_reduce(LevelsObject *self, PyObject *Py_UNUSED(ignored)) {
    PyObject *l = levels_as_list(self);
    if (l == NULL) return NULL;
    return Py_BuildValue("(O(N))", (PyObject *)&PyList_Type, l);
}

static PySequenceMethods levels_as_sequence = {
    .sq_length = (lenfunc)levels_len,
    .sq_item = (ssizeargfunc)levels_item,
};

static PyMethodDef levels_methods[] = {
    {"__reduce__", (PyCFunction)levels_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LevelsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "daemon.core._fastbook.Levels",
    .tp_doc = "Packed (price_ticks, size_lots) pairs of one book side of a frame (read-only sequence).",
    .tp_basicsize = offsetof(LevelsObject, v),
    .tp_itemsize = 2 * sizeof(int64_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_as_sequence = &levels_as_sequence,
    .tp_richcompare = levels_richcompare,
    .tp_repr = (reprfunc)levels_repr,
    .tp_methods = levels_methods,
    .tp_hash = PyObject_HashNotImplemented,
};

/* ------------------------------------------------------------------------------------------ */
/* module state: enum members, interned names                                                 */
/* ------------------------------------------------------------------------------------------ */

enum { ST_EMPTY = 0, ST_SYNCING = 1, ST_LIVE = 2, ST_RESYNCING = 3 };
enum { AP_OK = 0, AP_SNAPSHOT = 1, AP_STALE = 2, AP_IGNORED = 3, AP_GAP = 4, AP_CROSSED = 5, AP_SEQ_BACK = 6 };

static PyObject *g_states[4];  /* BookState members (set by init_enums) */
static PyObject *g_applied[7]; /* Applied members */
static PyObject *g_str_live, *g_str_empty, *g_str_subscribing;
static PyObject *n_snapshot, *n_u, *n_seq, *n_bids, *n_asks, *n_ts_ms, *n_cts_ms, *n_recv_ns;

static PyObject *state_obj(int st) {
    PyObject *o = g_states[st];
    if (o == NULL) return PyLong_FromLong(st);
    Py_INCREF(o);
    return o;
}

static PyObject *applied_obj(int a) {
    PyObject *o = g_applied[a];
    if (o == NULL) return PyLong_FromLong(a);
    Py_INCREF(o);
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* Side: sorted array of Level                                                                */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    Level *v;
    Py_ssize_t n, cap;
} Side;

static int side_reserve(Side *sd, Py_ssize_t need) {
    if (need <= sd->cap) return 0;
    Py_ssize_t cap = sd->cap ? sd->cap : 64;
    while (cap < need) cap *= 2;
    Level *v = PyMem_Realloc(sd->v, (size_t)cap * sizeof(Level));
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    sd->v = v;
    sd->cap = cap;
    return 0;
}

/* first index with v[i].k >= k */
static inline Py_ssize_t side_lower(const Side *sd, int64_t k) {
    Py_ssize_t lo = 0, hi = sd->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) >> 1;
        if (sd->v[mid].k < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* upsert (s != 0) or delete (s == 0) the level at key k; sequential semantics of the Python book */
static inline int side_change(Side *sd, int64_t k, int64_t s) {
    Py_ssize_t i = side_lower(sd, k);
    int found = i < sd->n && sd->v[i].k == k;
    if (s) {
        if (found) {
            sd->v[i].s = s;
        } else {
            if (side_reserve(sd, sd->n + 1) < 0) return -1;
            memmove(sd->v + i + 1, sd->v + i, (size_t)(sd->n - i) * sizeof(Level));
            sd->v[i].k = k;
            sd->v[i].s = s;
            sd->n++;
        }
    } else if (found) {
        memmove(sd->v + i, sd->v + i + 1, (size_t)(sd->n - i - 1) * sizeof(Level));
        sd->n--;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* OrderBook                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *symbol;
    Py_ssize_t depth;
    int state;
    PyObject *reason;
    long long last_u, last_seq, ts_ms, cts_ms, recv_ns, updates;
    Side bids, asks;
    /* scratch for converting a generic (non-Levels) change list: 2 ints per level */
    int64_t *tmp;
    Py_ssize_t tmp_cap;
} BookObject;

static PyTypeObject BookType;

static int book_init(BookObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"symbol", "depth", NULL};
    PyObject *symbol;
    Py_ssize_t depth;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kw, &symbol, &depth)) return -1;
    if (depth < 1) {
        PyErr_SetString(PyExc_ValueError, "depth must be >= 1");
        return -1;
    }
    Py_INCREF(symbol);
    Py_XSETREF(self->symbol, symbol);
    self->depth = depth;
    self->state = ST_EMPTY;
    Py_INCREF(g_str_empty);
    Py_XSETREF(self->reason, g_str_empty);
    self->last_u = self->last_seq = self->ts_ms = self->cts_ms = self->recv_ns = self->updates = 0;
    self->bids.n = self->asks.n = 0;
    return 0;
}

static void book_dealloc(BookObject *self) {
    Py_XDECREF(self->symbol);
    Py_XDECREF(self->reason);
    PyMem_Free(self->bids.v);
    PyMem_Free(self->asks.v);
    PyMem_Free(self->tmp);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void set_reason(BookObject *self, PyObject *r) { /* steals r (may be NULL on error) */
    if (r == NULL) {
        PyErr_Clear();
        r = PyUnicode_FromString("?");
        if (r == NULL) {
            PyErr_Clear();
            return;
        }
    }
    Py_XSETREF(self->reason, r);
}

static void set_reason_borrowed(BookObject *self, PyObject *r) {
    Py_INCREF(r);
    Py_XSETREF(self->reason, r);
}

/* -- reads -------------------------------------------------------------------------------- */

static PyObject *book_get_live(BookObject *self, void *c) { return PyBool_FromLong(self->state == ST_LIVE); }

static PyObject *book_get_state(BookObject *self, void *c) { return state_obj(self->state); }

static int book_set_state(BookObject *self, PyObject *v, void *c) {
    long st = v ? PyLong_AsLong(v) : -1;
    if (st == -1 && PyErr_Occurred()) return -1;
    if (st < 0 || st > 3) {
        PyErr_SetString(PyExc_ValueError, "state must be a BookState");
        return -1;
    }
    self->state = (int)st;
    return 0;
}

static PyObject *book_get_best_bid(BookObject *self, void *c) {
    if (!self->bids.n) Py_RETURN_NONE;
    return PyLong_FromLongLong(-self->bids.v[0].k);
}

static PyObject *book_get_best_ask(BookObject *self, void *c) {
    if (!self->asks.n) Py_RETURN_NONE;
    return PyLong_FromLongLong(self->asks.v[0].k);
}

static PyObject *book_best_bid_size(BookObject *self, PyObject *Py_UNUSED(a)) {
    return PyLong_FromLongLong(self->bids.n ? self->bids.v[0].s : 0);
}

static PyObject *book_best_ask_size(BookObject *self, PyObject *Py_UNUSED(a)) {
    return PyLong_FromLongLong(self->asks.n ? self->asks.v[0].s : 0);
}

/* lots over the top k levels of a side, as a Python int. Each size is < 2**62 but a sum of them
 * is not bounded by int64: it is summed in 128 bits (1000 levels < 2**72) and converted exactly,
 * so the answer is the Python reference's for every book. */
static PyObject *side_depth(const Side *sd, Py_ssize_t k) {
    __int128 v = 0;
    Py_ssize_t n = k < sd->n ? k : sd->n;
    for (Py_ssize_t i = 0; i < n; i++) v += sd->v[i].s;
    if (v >= INT64_MIN && v <= INT64_MAX) return PyLong_FromLongLong((long long)v);
    /* |v| < 2**126: high * 2**64 + low, through Python ints */
    unsigned __int128 u = v < 0 ? (unsigned __int128)(-v) : (unsigned __int128)v;
    PyObject *hi = PyLong_FromUnsignedLongLong((unsigned long long)(u >> 64));
    PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)u);
    PyObject *sh = PyLong_FromLong(64);
    PyObject *r = NULL, *t = NULL;
    if (hi && lo && sh && (t = PyNumber_Lshift(hi, sh)) != NULL) r = PyNumber_Or(t, lo);
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(sh);
    Py_XDECREF(t);
    if (r != NULL && v < 0) {
        PyObject *neg = PyNumber_Negative(r);
        Py_DECREF(r);
        r = neg;
    }
    return r;
}

/* k of top_depth/top_of_book: a level count, >= 0 (the Python reference refuses a negative k too) */
static int depth_k(PyObject *arg, Py_ssize_t *k) {
    *k = PyLong_AsSsize_t(arg);
    if (*k == -1 && PyErr_Occurred()) return -1;
    if (*k < 0) {
        PyErr_SetString(PyExc_ValueError, "k must be >= 0 levels");
        return -1;
    }
    return 0;
}

static PyObject *book_top_depth(BookObject *self, PyObject *arg) {
    Py_ssize_t k;
    if (depth_k(arg, &k) < 0) return NULL;
    PyObject *vb = side_depth(&self->bids, k);
    if (vb == NULL) return NULL;
    PyObject *va = side_depth(&self->asks, k);
    if (va == NULL) {
        Py_DECREF(vb);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(2, vb, va);
    Py_DECREF(vb);
    Py_DECREF(va);
    return t;
}

static PyObject *book_top_of_book(BookObject *self, PyObject *arg) {
    Py_ssize_t k;
    if (depth_k(arg, &k) < 0) return NULL;
    PyObject *t = PyTuple_New(6);
    if (t == NULL) return NULL;
    PyObject *v[6];
    if (self->bids.n) {
        v[0] = PyLong_FromLongLong(-self->bids.v[0].k);
    } else {
        Py_INCREF(Py_None);
        v[0] = Py_None;
    }
    if (self->asks.n) {
        v[1] = PyLong_FromLongLong(self->asks.v[0].k);
    } else {
        Py_INCREF(Py_None);
        v[1] = Py_None;
    }
    v[2] = PyLong_FromLongLong(self->bids.n ? self->bids.v[0].s : 0);
    v[3] = PyLong_FromLongLong(self->asks.n ? self->asks.v[0].s : 0);
    v[4] = side_depth(&self->bids, k);
    v[5] = side_depth(&self->asks, k);
    for (int i = 0; i < 6; i++) {
        if (v[i] == NULL) {
            for (int j = 0; j < 6; j++) Py_XDECREF(v[j]);
            Py_DECREF(t);
            return NULL;
        }
    }
    for (int i = 0; i < 6; i++) PyTuple_SET_ITEM(t, i, v[i]);
    return t;
}

static int count_arg(PyObject *nobj, Py_ssize_t n, Py_ssize_t *out) {
    if (nobj == NULL || nobj == Py_None) {
        *out = n;
        return 0;
    }
    Py_ssize_t k = PyLong_AsSsize_t(nobj);
    if (k == -1 && PyErr_Occurred()) return -1;
    if (k < 0) { /* Python slice semantics of keys[:k] */
        k = n + k;
        if (k < 0) k = 0;
    }
    *out = k < n ? k : n;
    return 0;
}

static PyObject *side_levels(const Side *sd, Py_ssize_t n, int neg) {
    PyObject *l = PyList_New(n);
    if (l == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = Py_BuildValue("(LL)", (long long)(neg ? -sd->v[i].k : sd->v[i].k), (long long)sd->v[i].s);
        if (t == NULL) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, t);
    }
    return l;
}

static PyObject *side_prices(const Side *sd, int neg) {
    PyObject *l = PyList_New(sd->n);
    if (l == NULL) return NULL;
    for (Py_ssize_t i = 0; i < sd->n; i++) {
        PyObject *p = PyLong_FromLongLong(neg ? -sd->v[i].k : sd->v[i].k);
        if (p == NULL) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, p);
    }
    return l;
}

static PyObject *book_bid_levels(BookObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"n", NULL};
    PyObject *nobj = NULL;
    Py_ssize_t n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:bid_levels", kw, &nobj)) return NULL;
    if (count_arg(nobj, self->bids.n, &n) < 0) return NULL;
    return side_levels(&self->bids, n, 1);
}

static PyObject *book_ask_levels(BookObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"n", NULL};
    PyObject *nobj = NULL;
    Py_ssize_t n;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:ask_levels", kw, &nobj)) return NULL;
    if (count_arg(nobj, self->asks.n, &n) < 0) return NULL;
    return side_levels(&self->asks, n, 0);
}

static PyObject *book_bid_prices(BookObject *self, PyObject *Py_UNUSED(a)) { return side_prices(&self->bids, 1); }

static PyObject *book_ask_prices(BookObject *self, PyObject *Py_UNUSED(a)) { return side_prices(&self->asks, 0); }

static PyObject *book_size_at(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *sideo = nargs > 0 ? args[0] : NULL, *priceo = nargs > 1 ? args[1] : NULL;
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nk; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(name, "side") == 0 && sideo == NULL)
            sideo = args[nargs + i];
        else if (PyUnicode_CompareWithASCIIString(name, "price") == 0 && priceo == NULL)
            priceo = args[nargs + i];
        else
            return PyErr_Format(PyExc_TypeError, "size_at() got an unexpected keyword argument %R", name);
    }
    if (nargs > 2 || sideo == NULL || priceo == NULL) return PyErr_Format(PyExc_TypeError, "size_at(side, price)");
    long side = PyLong_AsLong(sideo);
    if (side == -1 && PyErr_Occurred()) return NULL;
    int overflow = 0;
    long long p = PyLong_AsLongLongAndOverflow(priceo, &overflow);
    if (p == -1 && PyErr_Occurred()) return NULL;
    if (overflow || p >= VALUE_LIMIT || p <= -VALUE_LIMIT) return PyLong_FromLong(0);
    const Side *sd = side > 0 ? &self->bids : &self->asks;
    int64_t k = side > 0 ? -(int64_t)p : (int64_t)p;
    Py_ssize_t i = side_lower(sd, k);
    return PyLong_FromLongLong(i < sd->n && sd->v[i].k == k ? sd->v[i].s : 0);
}

static Py_ssize_t book_len(BookObject *self) { return self->bids.n + self->asks.n; }

/* -- state ------------------------------------------------------------------------------- */

static PyObject *book_request_sync(BookObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"reason", NULL};
    PyObject *reason = g_str_subscribing;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:request_sync", kw, &reason)) return NULL;
    self->state = self->state == ST_EMPTY ? ST_SYNCING : ST_RESYNCING;
    set_reason_borrowed(self, reason);
    Py_RETURN_NONE;
}

static PyObject *book_invalidate(BookObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"reason", NULL};
    PyObject *reason;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:invalidate", kw, &reason)) return NULL;
    if (self->state != ST_EMPTY) self->state = ST_RESYNCING;
    set_reason_borrowed(self, reason);
    Py_RETURN_NONE;
}

static PyObject *book_check_stale(BookObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"now_ns", "max_age_ms", NULL};
    long long now, age;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LL:check_stale", kw, &now, &age)) return NULL;
    if (self->state == ST_LIVE && now - self->recv_ns > age * 1000000LL) {
        long long ms = now - self->recv_ns;
        /* Python floor division for a positive divisor */
        long long q = ms / 1000000LL;
        if ((ms % 1000000LL) < 0) q -= 1;
        self->state = ST_RESYNCING;
        set_reason(self, PyUnicode_FromFormat("stale: no update for %lld ms", q));
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* -- writes ------------------------------------------------------------------------------ */

/* Changes of one side as (price, size) int64 pairs. For a Levels object: its buffer (no copy);
 * otherwise converted into the book's scratch at offset `off` ints. Returns count or -1. */
static Py_ssize_t changes_of(BookObject *self, PyObject *seq, const int64_t **out, Py_ssize_t off) {
    if (Py_IS_TYPE(seq, &LevelsType)) {
        *out = ((LevelsObject *)seq)->v;
        return Py_SIZE(seq);
    }
    PyObject *fast = PySequence_Fast(seq, "book levels must be a sequence of (price, size)");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t need = off + 2 * n;
    if (need > self->tmp_cap) {
        Py_ssize_t cap = self->tmp_cap ? self->tmp_cap : 256;
        while (cap < need) cap *= 2;
        int64_t *t = PyMem_Realloc(self->tmp, (size_t)cap * sizeof(int64_t));
        if (t == NULL) {
            Py_DECREF(fast);
            PyErr_NoMemory();
            return -1;
        }
        self->tmp = t;
        self->tmp_cap = cap;
    }
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast(items[i], "a book level must be a (price, size) pair");
        if (pair == NULL) {
            Py_DECREF(fast);
            return -1;
        }
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "a book level must be a (price, size) pair");
            return -1;
        }
        long long p = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(pair, 0));
        long long s = p == -1 && PyErr_Occurred() ? -1 : PyLong_AsLongLong(PySequence_Fast_GET_ITEM(pair, 1));
        Py_DECREF(pair);
        if ((p == -1 || s == -1) && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        if (p >= VALUE_LIMIT || p <= -VALUE_LIMIT || s >= VALUE_LIMIT || s <= -VALUE_LIMIT) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_OverflowError, "book price/size out of range (|v| >= 2**62)");
            return -1;
        }
        self->tmp[off + 2 * i] = p;
        self->tmp[off + 2 * i + 1] = s;
    }
    Py_DECREF(fast);
    *out = self->tmp != NULL ? self->tmp + off : NULL; /* no arithmetic on a NULL scratch (n == 0) */
    return n;
}

static int cmp3(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    if (x[1] != y[1]) return x[1] < y[1] ? -1 : 1;
    return 0;
}

/* Snapshot side: the levels with size > 0; a price listed twice keeps its last size (the Python
 * book builds a dict); sorted best first and cut to `depth`. */
static int load_side(Side *sd, const int64_t *ch, Py_ssize_t n, int neg, Py_ssize_t depth) {
    if (side_reserve(sd, n > 0 ? n : 1) < 0) return -1;
    Py_ssize_t m = 0;
    int sorted = 1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t s = ch[2 * i + 1];
        if (s <= 0) continue;
        int64_t k = neg ? -ch[2 * i] : ch[2 * i];
        if (m && k <= sd->v[m - 1].k) sorted = 0;
        sd->v[m].k = k;
        sd->v[m].s = s;
        m++;
    }
    if (!sorted) { /* rare (Bybit sends each side sorted, no repeats): sort by (key, -position) */
        int64_t *t = PyMem_Malloc((size_t)m * 3 * sizeof(int64_t));
        if (t == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < m; i++) {
            t[3 * i] = sd->v[i].k;
            t[3 * i + 1] = -(int64_t)i; /* later in the frame sorts first */
            t[3 * i + 2] = sd->v[i].s;
        }
        qsort(t, (size_t)m, 3 * sizeof(int64_t), cmp3);
        Py_ssize_t w = 0;
        for (Py_ssize_t i = 0; i < m; i++) {
            if (w && sd->v[w - 1].k == t[3 * i]) continue; /* an earlier entry of the same price */
            sd->v[w].k = t[3 * i];
            sd->v[w].s = t[3 * i + 2];
            w++;
        }
        PyMem_Free(t);
        m = w;
    }
    sd->n = m < depth ? m : depth;
    return 0;
}

/* a delta with more changes than this is merged in one pass after a sort (O(n log n)) instead of
 * one binary search + memmove each (quadratic for a hostile 250k-level delta); the result is the
 * same: a price's last change in the delta decides it (upsert or delete). Same bound as the Python
 * book's BATCH_CHANGES. */
#define BATCH_CHANGES 64

static int cmp_key_pos(const void *a, const void *b) {
    const int64_t *x = a, *y = b; /* (key, position, size) */
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : (x[1] > y[1]);
}

static int merge_side(Side *sd, const int64_t *ch, Py_ssize_t n, int neg) {
    int64_t *t = PyMem_Malloc((size_t)n * 3 * sizeof(int64_t));
    Level *out = PyMem_Malloc((size_t)(sd->n + n) * sizeof(Level));
    if (t == NULL || out == NULL) {
        PyMem_Free(t);
        PyMem_Free(out);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        t[3 * i] = neg ? -ch[2 * i] : ch[2 * i];
        t[3 * i + 1] = i;
        t[3 * i + 2] = ch[2 * i + 1];
    }
    qsort(t, (size_t)n, 3 * sizeof(int64_t), cmp_key_pos);
    Py_ssize_t a = 0, m = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        if (j + 1 < n && t[3 * (j + 1)] == t[3 * j]) continue; /* a later change of the same price wins */
        int64_t k = t[3 * j], s = t[3 * j + 2];
        while (a < sd->n && sd->v[a].k < k) out[m++] = sd->v[a++];
        if (a < sd->n && sd->v[a].k == k) a++; /* replaced or deleted */
        if (s) {
            out[m].k = k;
            out[m].s = s;
            m++;
        }
    }
    while (a < sd->n) out[m++] = sd->v[a++];
    PyMem_Free(t);
    PyMem_Free(sd->v);
    sd->v = out;
    sd->cap = sd->n + n;
    sd->n = m;
    return 0;
}

static int apply_side(Side *sd, const int64_t *ch, Py_ssize_t n, int neg) {
    if (n > BATCH_CHANGES) return merge_side(sd, ch, n, neg);
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t p = ch[2 * i];
        if (side_change(sd, neg ? -p : p, ch[2 * i + 1]) < 0) return -1;
    }
    return 0;
}

static int get_ll(PyObject *ev, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(ev, name);
    if (v == NULL) return -1;
    long long x = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = x;
    return 0;
}

static PyObject *book_after(BookObject *self, PyObject *ev, long long u, long long seq, int ok) {
    long long ts, cts, recv;
    if (get_ll(ev, n_ts_ms, &ts) < 0 || get_ll(ev, n_cts_ms, &cts) < 0 || get_ll(ev, n_recv_ns, &recv) < 0)
        return NULL;
    self->last_u = u;
    if (seq) self->last_seq = seq;
    self->ts_ms = ts;
    self->cts_ms = cts;
    self->recv_ns = recv;
    self->updates++;
    if (self->bids.n && self->asks.n && -self->bids.v[0].k >= self->asks.v[0].k) {
        self->state = ST_RESYNCING;
        set_reason(self, PyUnicode_FromFormat("crossed: bid %lld >= ask %lld", (long long)-self->bids.v[0].k,
                                              (long long)self->asks.v[0].k));
        return applied_obj(AP_CROSSED);
    }
    self->state = ST_LIVE;
    set_reason_borrowed(self, g_str_live);
    return applied_obj(ok);
}

static PyObject *book_apply(BookObject *self, PyObject *ev) {
    PyObject *o;
    long long u, seq;
    int snap;
    o = PyObject_GetAttr(ev, n_snapshot);
    if (o == NULL) return NULL;
    snap = PyObject_IsTrue(o);
    Py_DECREF(o);
    if (snap < 0) return NULL;
    if (get_ll(ev, n_u, &u) < 0 || get_ll(ev, n_seq, &seq) < 0) return NULL;
    if (!snap && u != 1) {
        if (self->state != ST_LIVE) return applied_obj(AP_IGNORED);
        if (u <= self->last_u) return applied_obj(AP_STALE);
        if (u != self->last_u + 1) {
            self->state = ST_RESYNCING;
            set_reason(self, PyUnicode_FromFormat("gap: u %lld -> %lld", self->last_u, u));
            return applied_obj(AP_GAP);
        }
        if (seq && seq < self->last_seq) {
            self->state = ST_RESYNCING;
            set_reason(self, PyUnicode_FromFormat("seq went backwards: %lld -> %lld", self->last_seq, seq));
            return applied_obj(AP_SEQ_BACK);
        }
    }
    /* convert both sides before touching the book: a bad level leaves it unchanged */
    PyObject *b = PyObject_GetAttr(ev, n_bids);
    if (b == NULL) return NULL;
    PyObject *a = PyObject_GetAttr(ev, n_asks);
    if (a == NULL) {
        Py_DECREF(b);
        return NULL;
    }
    const int64_t *cb, *ca;
    Py_ssize_t nb = changes_of(self, b, &cb, 0);
    Py_ssize_t na = nb < 0 ? -1 : changes_of(self, a, &ca, Py_IS_TYPE(b, &LevelsType) ? 0 : 2 * nb);
    PyObject *res = NULL;
    if (na >= 0) {
        /* the scratch may have moved when the ask conversion grew it */
        if (!Py_IS_TYPE(b, &LevelsType)) cb = self->tmp;
        if (snap || u == 1) {
            if (load_side(&self->bids, cb, nb, 1, self->depth) == 0 && load_side(&self->asks, ca, na, 0, self->depth) == 0)
                res = book_after(self, ev, u, seq, AP_SNAPSHOT);
        } else if (apply_side(&self->bids, cb, nb, 1) == 0 && apply_side(&self->asks, ca, na, 0) == 0) {
            if (self->bids.n > self->depth) self->bids.n = self->depth;
            if (self->asks.n > self->depth) self->asks.n = self->depth;
            res = book_after(self, ev, u, seq, AP_OK);
        }
    }
    Py_DECREF(b);
    Py_DECREF(a);
    return res;
}

static PyGetSetDef book_getset[] = {
    {"live", (getter)book_get_live, NULL, "True when the book is LIVE (the only state that may quote).", NULL},
    {"state", (getter)book_get_state, (setter)book_set_state, "BookState.", NULL},
    {"best_bid", (getter)book_get_best_bid, NULL, "Best bid price in ticks, or None.", NULL},
    {"best_ask", (getter)book_get_best_ask, NULL, "Best ask price in ticks, or None.", NULL},
    {NULL},
};

static PyMemberDef book_members[] = {
    {"symbol", T_OBJECT, offsetof(BookObject, symbol), READONLY, NULL},
    {"depth", T_PYSSIZET, offsetof(BookObject, depth), READONLY, NULL},
    {"reason", T_OBJECT, offsetof(BookObject, reason), 0, NULL},
    {"last_u", T_LONGLONG, offsetof(BookObject, last_u), 0, NULL},
    {"last_seq", T_LONGLONG, offsetof(BookObject, last_seq), 0, NULL},
    {"ts_ms", T_LONGLONG, offsetof(BookObject, ts_ms), 0, NULL},
    {"cts_ms", T_LONGLONG, offsetof(BookObject, cts_ms), 0, NULL},
    {"recv_ns", T_LONGLONG, offsetof(BookObject, recv_ns), 0, NULL},
    {"updates", T_LONGLONG, offsetof(BookObject, updates), 0, NULL},
    {NULL},
};

static PyMethodDef book_methods[] = {
    {"apply", (PyCFunction)book_apply, METH_O, "Apply one BookUpdate; returns an Applied. Never raises on bad sequencing."},
    {"request_sync", (PyCFunction)(void (*)(void))book_request_sync, METH_VARARGS | METH_KEYWORDS, "The shell (re)subscribed: wait for a snapshot."},
    {"invalidate", (PyCFunction)(void (*)(void))book_invalidate, METH_VARARGS | METH_KEYWORDS, "Mark the book unusable until the next snapshot."},
    {"check_stale", (PyCFunction)(void (*)(void))book_check_stale, METH_VARARGS | METH_KEYWORDS, "check_stale(now_ns, max_age_ms) -> bool"},
    {"best_bid_size", (PyCFunction)book_best_bid_size, METH_NOARGS, "Lots at the best bid (0 if none)."},
    {"best_ask_size", (PyCFunction)book_best_ask_size, METH_NOARGS, "Lots at the best ask (0 if none)."},
    {"top_depth", (PyCFunction)book_top_depth, METH_O, "top_depth(k) -> (bid_lots, ask_lots) over the top k levels."},
    {"top_of_book", (PyCFunction)book_top_of_book, METH_O,
     "top_of_book(k) -> (best_bid, best_ask, bid_size, ask_size, bid_depth_k, ask_depth_k)."},
    {"bid_levels", (PyCFunction)(void (*)(void))book_bid_levels, METH_VARARGS | METH_KEYWORDS, "Top n bid levels, best first, as (price_ticks, size_lots)."},
    {"ask_levels", (PyCFunction)(void (*)(void))book_ask_levels, METH_VARARGS | METH_KEYWORDS, "Top n ask levels, best first, as (price_ticks, size_lots)."},
    {"bid_prices", (PyCFunction)book_bid_prices, METH_NOARGS, "All bid prices, best first."},
    {"ask_prices", (PyCFunction)book_ask_prices, METH_NOARGS, "All ask prices, best first."},
    {"size_at", (PyCFunction)(void (*)(void))book_size_at, METH_FASTCALL | METH_KEYWORDS, "size_at(side, price) -> lots (0 if no level)."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods book_as_sequence = {
    .sq_length = (lenfunc)book_len,
};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "daemon.core._fastbook.OrderBook",
    .tp_doc = "The verified order book of one topic, in C (same API and results as daemon.core.book.PyOrderBook).",
    .tp_basicsize = sizeof(BookObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)book_init,
    .tp_dealloc = (destructor)book_dealloc,
    .tp_methods = book_methods,
    .tp_members = book_members,
    .tp_getset = book_getset,
    .tp_as_sequence = &book_as_sequence,
};

/* ------------------------------------------------------------------------------------------ */
/* Scanner: plain Bybit orderbook / publicTrade frames -> [BookUpdate] / [Trade, ...]           */
/* ------------------------------------------------------------------------------------------ */

#define MAX_SYMBOLS 64
#define SYM_MAX 32

typedef struct {
    char name[SYM_MAX];
    Py_ssize_t len;
    PyObject *pysym;
    int pdec, qdec;       /* grid decimals */
    int64_t punits, qunits; /* grid step in units of 10**-decimals */
} SymGrid;

typedef struct {
    PyObject_HEAD
    PyObject *event_type; /* BookUpdate */
    PyObject *trade_type; /* Trade, or NULL: publicTrade frames are declined */
    PyObject *buy, *sell; /* the side constants (+1 / -1) */
    SymGrid syms[MAX_SYMBOLS];
    int nsyms;
    PyObject *depth_objs[8];
    long depths[8];
    int ndepths;
    long long frames;       /* orderbook frames turned into events */
    long long trade_frames; /* publicTrade frames turned into events */
    int64_t *buf;           /* scratch: bids then asks */
    Py_ssize_t cap;
} ScannerObject;

typedef struct {
    const char *p, *end;
} Cur;

static const int64_t POW10[19] = {1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
                                  1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
                                  100000000000000LL, 1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
                                  1000000000000000000LL};

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static inline int eat(Cur *c, char ch) {
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* a plain string (no escapes, printable ASCII): sets [*s, *s+*n), cursor after the quote */
static inline int plain_string(Cur *c, const char **s, Py_ssize_t *n) {
    ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const char *q = ++c->p;
    while (q < c->end) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '"') break;
        if (ch == '\\' || ch < 0x20 || ch >= 0x80) return 0;
        q++;
    }
    if (q >= c->end) return 0;
    *s = c->p;
    *n = q - c->p;
    c->p = q + 1;
    return 1;
}

/* a JSON integer (no fraction/exponent), at most 18 digits */
static inline int json_int(Cur *c, long long *out) {
    ws(c);
    const char *q = c->p;
    int neg = 0;
    if (q < c->end && *q == '-') {
        neg = 1;
        q++;
    }
    const char *d = q;
    long long v = 0;
    while (q < c->end && *q >= '0' && *q <= '9') {
        if (q - d >= 18) return 0; /* a 19th digit: checked before it is multiplied in (no overflow) */
        v = v * 10 + (*q - '0');
        q++;
    }
    if (q == d) return 0;
    if (*d == '0' && q - d > 1) return 0; /* leading zero: not JSON */
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E')) return 0;
    c->p = q;
    *out = neg ? -v : v;
    return 1;
}

static int skip_value(Cur *c, int depth);

static int skip_number(Cur *c) {
    const char *q = c->p;
    if (q < c->end && *q == '-') q++;
    if (q >= c->end) return 0;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < c->end && *q >= '0' && *q <= '9') q++;
    } else {
        return 0;
    }
    if (q < c->end && *q == '.') {
        q++;
        const char *d = q;
        while (q < c->end && *q >= '0' && *q <= '9') q++;
        if (q == d) return 0;
    }
    if (q < c->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < c->end && (*q == '+' || *q == '-')) q++;
        const char *d = q;
        while (q < c->end && *q >= '0' && *q <= '9') q++;
        if (q == d) return 0;
    }
    c->p = q;
    return 1;
}

static int skip_lit(Cur *c, const char *lit, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, lit, (size_t)n) != 0) return 0;
    c->p += n;
    return 1;
}

static int skip_value(Cur *c, int depth) {
    const char *s;
    Py_ssize_t n;
    if (depth > 32) return 0;
    ws(c);
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '"':
        return plain_string(c, &s, &n);
    case '{':
        c->p++;
        if (eat(c, '}')) return 1;
        for (;;) {
            if (!plain_string(c, &s, &n) || !eat(c, ':') || !skip_value(c, depth + 1)) return 0;
            if (eat(c, ',')) continue;
            return eat(c, '}');
        }
    case '[':
        c->p++;
        if (eat(c, ']')) return 1;
        for (;;) {
            if (!skip_value(c, depth + 1)) return 0;
            if (eat(c, ',')) continue;
            return eat(c, ']');
        }
    case 't':
        return skip_lit(c, "true", 4);
    case 'f':
        return skip_lit(c, "false", 5);
    case 'n':
        return skip_lit(c, "null", 4);
    default:
        return skip_number(c);
    }
}

/* decimal string -> grid count: digits[.digits], exact, on the grid, < 2**62; else 0 */
static inline int grid_value(const char *s, Py_ssize_t n, int dec, int64_t units, int64_t *out) {
    const char *e = s + n;
    const char *q = s;
    int64_t v = 0;
    int digits = 0;
    while (q < e && *q >= '0' && *q <= '9') {
        if (digits >= 18) return 0; /* checked before the digit is multiplied in (no overflow) */
        v = v * 10 + (*q - '0');
        digits++;
        q++;
    }
    if (q == s) return 0;
    int f = 0;
    if (q < e) {
        if (*q != '.') return 0;
        q++;
        if (q == e) return 0; /* "5." : leave it to the reference parser */
        while (q < e) {
            char ch = *q;
            if (ch < '0' || ch > '9') return 0;
            if (f < dec) {
                if (digits >= 18) return 0;
                v = v * 10 + (ch - '0');
                digits++;
                f++;
            } else if (ch != '0') {
                return 0; /* finer than the grid's decimals: off grid */
            }
            q++;
        }
    }
    if (f < dec) {
        if (digits + (dec - f) > 18) return 0;
        v *= POW10[dec - f];
    }
    if (units != 1) {
        if (v % units) return 0;
        v /= units;
    }
    if (v >= VALUE_LIMIT) return 0;
    *out = v;
    return 1;
}

static int scan_reserve(ScannerObject *self, Py_ssize_t need) {
    if (need <= self->cap) return 0;
    Py_ssize_t cap = self->cap ? self->cap : 1024;
    while (cap < need) cap *= 2;
    int64_t *b = PyMem_Realloc(self->buf, (size_t)cap * sizeof(int64_t));
    if (b == NULL) return -1;
    self->buf = b;
    self->cap = cap;
    return 0;
}

/* [["p","s"], ...] into buf from *used; returns count or -1 */
static Py_ssize_t scan_levels(ScannerObject *self, Cur *c, const SymGrid *g, Py_ssize_t *used) {
    Py_ssize_t n = 0;
    if (!eat(c, '[')) return -1;
    if (eat(c, ']')) return 0;
    for (;;) {
        const char *ps, *ss;
        Py_ssize_t pn, sn;
        int64_t p, s;
        if (!eat(c, '[') || !plain_string(c, &ps, &pn) || !eat(c, ',') || !plain_string(c, &ss, &sn) || !eat(c, ']'))
            return -1;
        if (!grid_value(ps, pn, g->pdec, g->punits, &p) || !grid_value(ss, sn, g->qdec, g->qunits, &s)) return -1;
        if (scan_reserve(self, *used + 2) < 0) return -1;
        self->buf[(*used)++] = p;
        self->buf[(*used)++] = s;
        n++;
        if (eat(c, ',')) continue;
        if (eat(c, ']')) return n;
        return -1;
    }
}

typedef struct {
    int have_s, have_b, have_a, have_u, have_seq;
    long long u, seq;
    Py_ssize_t nb, na;     /* level counts */
    Py_ssize_t boff, aoff; /* where each side starts in the scanner's buffer (ints) */
} BookData;

static int scan_data(ScannerObject *self, Cur *c, const SymGrid *g, BookData *d) {
    Py_ssize_t used = 0;
    memset(d, 0, sizeof(*d));
    if (!eat(c, '{')) return 0;
    if (eat(c, '}')) return 0;
    for (;;) {
        const char *k;
        Py_ssize_t kn;
        if (!plain_string(c, &k, &kn) || !eat(c, ':')) return 0;
        if (kn == 1 && k[0] == 's') {
            const char *s;
            Py_ssize_t sn;
            if (d->have_s++ || !plain_string(c, &s, &sn)) return 0;
            if (sn != g->len || memcmp(s, g->name, (size_t)sn) != 0) return 0;
        } else if (kn == 1 && k[0] == 'b') {
            if (d->have_b++) return 0;
            d->boff = used;
            d->nb = scan_levels(self, c, g, &used);
            if (d->nb < 0) return 0;
        } else if (kn == 1 && k[0] == 'a') {
            if (d->have_a++) return 0;
            d->aoff = used;
            d->na = scan_levels(self, c, g, &used);
            if (d->na < 0) return 0;
        } else if (kn == 1 && k[0] == 'u') {
            if (d->have_u++ || !json_int(c, &d->u)) return 0;
        } else if (kn == 3 && memcmp(k, "seq", 3) == 0) {
            if (d->have_seq++ || !json_int(c, &d->seq)) return 0;
        } else if (!skip_value(c, 1)) {
            return 0;
        }
        if (eat(c, ',')) continue;
        if (!eat(c, '}')) return 0;
        break;
    }
    return d->have_s && d->have_b && d->have_a && d->have_u;
}

/* One publicTrade row -> Trade (new reference), or NULL with no error set when the row is not plain
 * (the caller declines the frame), or NULL with an error set on a Python failure. */
static PyObject *scan_trade_row(ScannerObject *self, Cur *c, const SymGrid *g, PyObject *recv_ns) {
    int have_T = 0, have_s = 0, have_S = 0, have_v = 0, have_p = 0, have_i = 0, have_seq = 0, have_BT = 0;
    long long T = 0, seq = 0;
    int64_t p = 0, v = 0;
    int side = 0, bt = 0;
    const char *id = "";
    Py_ssize_t idn = 0;
    if (!eat(c, '{')) return NULL;
    if (!eat(c, '}')) {
        for (;;) {
            const char *k, *sv;
            Py_ssize_t kn, sn;
            if (!plain_string(c, &k, &kn) || !eat(c, ':')) return NULL;
            if (kn == 1 && k[0] == 'T') {
                if (have_T++ || !json_int(c, &T)) return NULL;
            } else if (kn == 1 && k[0] == 's') {
                if (have_s++ || !plain_string(c, &sv, &sn)) return NULL;
                if (sn != g->len || memcmp(sv, g->name, (size_t)sn) != 0) return NULL;
            } else if (kn == 1 && k[0] == 'S') {
                if (have_S++ || !plain_string(c, &sv, &sn)) return NULL;
                if (sn == 3 && memcmp(sv, "Buy", 3) == 0)
                    side = 1;
                else if (sn == 4 && memcmp(sv, "Sell", 4) == 0)
                    side = -1;
                else
                    return NULL;
            } else if (kn == 1 && k[0] == 'v') {
                if (have_v++ || !plain_string(c, &sv, &sn) || !grid_value(sv, sn, g->qdec, g->qunits, &v)) return NULL;
            } else if (kn == 1 && k[0] == 'p') {
                if (have_p++ || !plain_string(c, &sv, &sn) || !grid_value(sv, sn, g->pdec, g->punits, &p)) return NULL;
            } else if (kn == 1 && k[0] == 'i') {
                if (have_i++ || !plain_string(c, &id, &idn)) return NULL;
            } else if (kn == 3 && memcmp(k, "seq", 3) == 0) {
                if (have_seq++ || !json_int(c, &seq)) return NULL;
            } else if (kn == 2 && k[0] == 'B' && k[1] == 'T') {
                if (have_BT++) return NULL;
                ws(c);
                if (skip_lit(c, "true", 4))
                    bt = 1;
                else if (skip_lit(c, "false", 5))
                    bt = 0;
                else
                    return NULL;
            } else if (!skip_value(c, 2)) {
                return NULL;
            }
            if (eat(c, ',')) continue;
            if (!eat(c, '}')) return NULL;
            break;
        }
    }
    if (!have_T || !have_s || !have_S || !have_v || !have_p) return NULL;
    PyObject *argv[9];
    argv[0] = g->pysym;
    argv[1] = side > 0 ? self->buy : self->sell;
    argv[2] = PyLong_FromLongLong(p);
    argv[3] = PyLong_FromLongLong(v);
    argv[4] = PyUnicode_FromStringAndSize(id, idn);
    argv[5] = PyLong_FromLongLong(seq);
    argv[6] = PyLong_FromLongLong(T);
    argv[7] = recv_ns;
    argv[8] = bt ? Py_True : Py_False;
    PyObject *tr = NULL;
    if (argv[2] && argv[3] && argv[4] && argv[5] && argv[6]) tr = PyObject_Vectorcall(self->trade_type, argv, 9, NULL);
    for (int i = 2; i < 7; i++) Py_XDECREF(argv[i]);
    return tr;
}

/* [row, ...] -> list of Trade; NULL without an error = decline */
static PyObject *scan_trades(ScannerObject *self, Cur *c, const SymGrid *g, PyObject *recv_ns) {
    if (!eat(c, '[')) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    if (eat(c, ']')) return out;
    for (;;) {
        PyObject *tr = scan_trade_row(self, c, g, recv_ns);
        if (tr == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        int r = PyList_Append(out, tr);
        Py_DECREF(tr);
        if (r < 0) {
            Py_DECREF(out);
            return NULL;
        }
        if (eat(c, ',')) continue;
        if (eat(c, ']')) return out;
        Py_DECREF(out);
        return NULL;
    }
}

static const SymGrid *find_symbol(ScannerObject *self, const char *q, Py_ssize_t n) {
    for (int i = 0; i < self->nsyms; i++)
        if (self->syms[i].len == n && memcmp(self->syms[i].name, q, (size_t)n) == 0) return &self->syms[i];
    return NULL;
}

static PyObject *scanner_scan(ScannerObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "scan(raw, recv_ns) takes 2 arguments");
    PyObject *raw = args[0];
    const char *buf;
    Py_ssize_t len;
    if (PyBytes_Check(raw)) {
        buf = PyBytes_AS_STRING(raw);
        len = PyBytes_GET_SIZE(raw);
    } else if (PyUnicode_Check(raw)) {
        if (PyUnicode_READY(raw) < 0) return NULL;
        if (!PyUnicode_IS_ASCII(raw)) Py_RETURN_NONE;
        buf = (const char *)PyUnicode_DATA(raw);
        len = PyUnicode_GET_LENGTH(raw);
    } else {
        Py_RETURN_NONE;
    }
    if (scan_reserve(self, 64) < 0) return PyErr_NoMemory();
    Cur c = {buf, buf + len};
    const SymGrid *g = NULL;
    int depth_i = -1, have_topic = 0, have_type = 0, have_ts = 0, have_cts = 0, have_data = 0;
    int snapshot = 0, is_trade = 0;
    long long ts = 0, cts = 0;
    BookData d;
    const char *data_at = NULL;
    PyObject *trades = NULL;
    if (!eat(&c, '{')) goto decline;
    if (eat(&c, '}')) goto decline;
    for (;;) {
        const char *k;
        Py_ssize_t kn;
        if (!plain_string(&c, &k, &kn) || !eat(&c, ':')) goto decline;
        if (kn == 5 && memcmp(k, "topic", 5) == 0) {
            const char *t;
            Py_ssize_t tn;
            if (have_topic++ || !plain_string(&c, &t, &tn)) goto decline;
            if (tn > 12 && memcmp(t, "publicTrade.", 12) == 0 && self->trade_type != NULL) {
                is_trade = 1; /* publicTrade.{symbol} */
                g = find_symbol(self, t + 12, tn - 12);
                if (g == NULL) goto decline;
            } else {
                /* orderbook.{depth}.{symbol} */
                if (tn < 12 || memcmp(t, "orderbook.", 10) != 0) goto decline;
                const char *q = t + 10, *e = t + tn;
                long dep = 0;
                const char *ds = q;
                while (q < e && *q >= '0' && *q <= '9' && q - ds < 6) dep = dep * 10 + (*q++ - '0');
                if (q == ds || q >= e || *q != '.' || *ds == '0') goto decline;
                q++;
                for (int i = 0; i < self->ndepths; i++)
                    if (self->depths[i] == dep) depth_i = i;
                if (depth_i < 0) goto decline;
                g = find_symbol(self, q, e - q);
                if (g == NULL) goto decline;
            }
        } else if (kn == 4 && memcmp(k, "type", 4) == 0) {
            const char *t;
            Py_ssize_t tn;
            if (have_type++ || !plain_string(&c, &t, &tn)) goto decline;
            if (tn == 8 && memcmp(t, "snapshot", 8) == 0)
                snapshot = 1;
            else if (tn == 5 && memcmp(t, "delta", 5) == 0)
                snapshot = 0;
            else
                snapshot = -1; /* only orderbook frames care (they decline it below) */
        } else if (kn == 2 && memcmp(k, "ts", 2) == 0) {
            if (have_ts++ || !json_int(&c, &ts)) goto decline;
        } else if (kn == 3 && memcmp(k, "cts", 3) == 0) {
            if (have_cts++ || !json_int(&c, &cts)) goto decline;
        } else if (kn == 4 && memcmp(k, "data", 4) == 0) {
            if (have_data++) goto decline;
            if (g != NULL && is_trade) {
                trades = scan_trades(self, &c, g, args[1]);
                if (trades == NULL) goto decline;
            } else if (g != NULL) {
                if (!scan_data(self, &c, g, &d)) goto decline;
            } else { /* topic not seen yet: validate now, decode once the topic is known */
                ws(&c);
                data_at = c.p;
                if (!skip_value(&c, 1)) goto decline;
            }
        } else if (!skip_value(&c, 1)) {
            goto decline;
        }
        if (eat(&c, ',')) continue;
        if (!eat(&c, '}')) goto decline;
        break;
    }
    ws(&c);
    if (c.p != c.end || g == NULL || !have_data) goto decline;
    if (is_trade) {
        if (data_at != NULL) {
            Cur dc = {data_at, buf + len};
            trades = scan_trades(self, &dc, g, args[1]);
            if (trades == NULL) goto decline;
        }
        self->trade_frames++;
        return trades;
    }
    if (!have_type || snapshot < 0) goto decline;
    if (data_at != NULL) {
        Cur dc = {data_at, buf + len};
        if (!scan_data(self, &dc, g, &d)) goto decline;
    }
    LevelsObject *lb = levels_new(d.nb, self->buf + d.boff);
    if (lb == NULL) return NULL;
    LevelsObject *la = levels_new(d.na, self->buf + d.aoff);
    if (la == NULL) {
        Py_DECREF(lb);
        return NULL;
    }
    PyObject *argv[10];
    argv[0] = g->pysym;
    argv[1] = self->depth_objs[depth_i];
    argv[2] = snapshot ? Py_True : Py_False;
    argv[3] = (PyObject *)lb;
    argv[4] = (PyObject *)la;
    argv[5] = PyLong_FromLongLong(d.u);
    argv[6] = PyLong_FromLongLong(d.seq);
    argv[7] = PyLong_FromLongLong(ts);
    argv[8] = PyLong_FromLongLong(cts);
    argv[9] = args[1];
    PyObject *ev = NULL;
    if (argv[5] && argv[6] && argv[7] && argv[8]) ev = PyObject_Vectorcall(self->event_type, argv, 10, NULL);
    for (int i = 5; i < 9; i++) Py_XDECREF(argv[i]);
    Py_DECREF(lb);
    Py_DECREF(la);
    if (ev == NULL) return NULL;
    self->frames++;
    PyObject *out = PyList_New(1);
    if (out == NULL) {
        Py_DECREF(ev);
        return NULL;
    }
    PyList_SET_ITEM(out, 0, ev);
    return out;
decline: /* not a plain frame (or a Python error): the general parser takes it */
    Py_XDECREF(trades);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static int scanner_init(ScannerObject *self, PyObject *args, PyObject *kwds) {
    static char *kw[] = {"grids", "event_type", "depths", "trade_type", "buy", "sell", NULL};
    PyObject *grids, *event_type, *depths, *trade_type = NULL, *buy = NULL, *sell = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO|OOO", kw, &PyDict_Type, &grids, &event_type, &depths, &trade_type,
                                     &buy, &sell))
        return -1;
    if (trade_type != NULL && trade_type != Py_None && (buy == NULL || sell == NULL)) {
        PyErr_SetString(PyExc_TypeError, "trade_type needs buy and sell");
        return -1;
    }
    Py_INCREF(event_type);
    Py_XSETREF(self->event_type, event_type);
    if (trade_type != NULL && trade_type != Py_None) {
        Py_INCREF(trade_type);
        Py_XSETREF(self->trade_type, trade_type);
        Py_INCREF(buy);
        Py_XSETREF(self->buy, buy);
        Py_INCREF(sell);
        Py_XSETREF(self->sell, sell);
    }
    PyObject *key, *val;
    Py_ssize_t pos = 0;
    self->nsyms = 0;
    while (PyDict_Next(grids, &pos, &key, &val)) {
        if (self->nsyms >= MAX_SYMBOLS) {
            PyErr_SetString(PyExc_ValueError, "too many symbols for the fast scanner");
            return -1;
        }
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(key, &n);
        if (s == NULL) return -1;
        if (n >= SYM_MAX || n == 0) {
            PyErr_SetString(PyExc_ValueError, "symbol name too long for the fast scanner");
            return -1;
        }
        SymGrid *g = &self->syms[self->nsyms];
        long long pu, qu;
        if (!PyArg_ParseTuple(val, "iLiL", &g->pdec, &pu, &g->qdec, &qu)) return -1;
        if (g->pdec < 0 || g->pdec > 18 || g->qdec < 0 || g->qdec > 18 || pu < 1 || qu < 1) {
            PyErr_SetString(PyExc_ValueError, "bad grid for the fast scanner");
            return -1;
        }
        g->punits = pu;
        g->qunits = qu;
        memcpy(g->name, s, (size_t)n);
        g->len = n;
        Py_INCREF(key);
        Py_XSETREF(g->pysym, key);
        self->nsyms++;
    }
    PyObject *fast = PySequence_Fast(depths, "depths must be a sequence of ints");
    if (fast == NULL) return -1;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(fast);
    if (nd > 8) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "at most 8 depths");
        return -1;
    }
    for (Py_ssize_t i = 0; i < nd; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        long v = PyLong_AsLong(o);
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        self->depths[i] = v;
        Py_INCREF(o);
        Py_XSETREF(self->depth_objs[i], o);
    }
    self->ndepths = (int)nd;
    Py_DECREF(fast);
    return 0;
}

static void scanner_dealloc(ScannerObject *self) {
    Py_XDECREF(self->event_type);
    Py_XDECREF(self->trade_type);
    Py_XDECREF(self->buy);
    Py_XDECREF(self->sell);
    for (int i = 0; i < MAX_SYMBOLS; i++) Py_XDECREF(self->syms[i].pysym);
    for (int i = 0; i < 8; i++) Py_XDECREF(self->depth_objs[i]);
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef scanner_members[] = {
    {"frames", T_LONGLONG, offsetof(ScannerObject, frames), 0, "orderbook frames turned into events"},
    {"trade_frames", T_LONGLONG, offsetof(ScannerObject, trade_frames), 0, "publicTrade frames turned into events"},
    {NULL},
};

static PyMethodDef scanner_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scanner_scan, METH_FASTCALL,
     "scan(raw, recv_ns) -> [BookUpdate] / [Trade, ...] for a plain orderbook / publicTrade frame of a configured "
     "symbol, else None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "daemon.core._fastbook.Scanner",
    .tp_doc = "Scanner(grids={symbol: (price_decimals, price_units, qty_decimals, qty_units)}, event_type, depths, "
              "trade_type=None, buy=None, sell=None)",
    .tp_basicsize = sizeof(ScannerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)scanner_init,
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_methods = scanner_methods,
    .tp_members = scanner_members,
};

/* ------------------------------------------------------------------------------------------ */

static PyObject *init_enums(PyObject *mod, PyObject *args) {
    PyObject *states, *applied;
    if (!PyArg_ParseTuple(args, "OO", &states, &applied)) return NULL;
    for (int i = 0; i < 4; i++) {
        PyObject *o = PySequence_GetItem(states, i);
        if (o == NULL) return NULL;
        Py_XSETREF(g_states[i], o);
    }
    for (int i = 0; i < 7; i++) {
        PyObject *o = PySequence_GetItem(applied, i);
        if (o == NULL) return NULL;
        Py_XSETREF(g_applied[i], o);
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"init_enums", init_enums, METH_VARARGS, "init_enums(BookState members, Applied members) in value order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastbook_module = {
    PyModuleDef_HEAD_INIT, "_fastbook", "C order book and Bybit orderbook-frame scanner (see daemon/core/book.py).",
    -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastbook(void) {
    if (PyType_Ready(&LevelsType) < 0 || PyType_Ready(&BookType) < 0 || PyType_Ready(&ScannerType) < 0) return NULL;
    g_str_live = PyUnicode_InternFromString("live");
    g_str_empty = PyUnicode_InternFromString("empty");
    g_str_subscribing = PyUnicode_InternFromString("subscribing");
    n_snapshot = PyUnicode_InternFromString("snapshot");
    n_u = PyUnicode_InternFromString("u");
    n_seq = PyUnicode_InternFromString("seq");
    n_bids = PyUnicode_InternFromString("bids");
    n_asks = PyUnicode_InternFromString("asks");
    n_ts_ms = PyUnicode_InternFromString("ts_ms");
    n_cts_ms = PyUnicode_InternFromString("cts_ms");
    n_recv_ns = PyUnicode_InternFromString("recv_ns");
    PyObject *m = PyModule_Create(&fastbook_module);
    if (m == NULL) return NULL;
    Py_INCREF(&LevelsType);
    Py_INCREF(&BookType);
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Levels", (PyObject *)&LevelsType) < 0 ||
        PyModule_AddObject(m, "OrderBook", (PyObject *)&BookType) < 0 ||
        PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0)
        return NULL;
    return m;
}
