"""Property tests of the local book against a naive reference implementation.

The reference (`NaiveBook`) is written independently and deliberately simply: plain dicts, a full
sort on every read, and its own sequencing rules straight from PROTOCOL.md §2.3-2.4.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.book import Applied, BookState, PyOrderBook, fastbook
from daemon.core.events import BookUpdate

#: every implementation of the book runs every test: the Python reference and the C one (when built)
BOOKS = [pytest.param(PyOrderBook, id="python")] + ([pytest.param(fastbook.OrderBook, id="c")] if fastbook else [])
books = pytest.mark.parametrize("OrderBook", BOOKS)


class NaiveBook:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.u = 0
        self.valid = False

    def feed(self, snapshot: bool, bids, asks, u: int) -> None:
        if snapshot or u == 1:
            self.bids = {p: s for p, s in bids if s}
            self.asks = {p: s for p, s in asks if s}
            self.u = u
            self.valid = True
        elif not self.valid or u <= self.u:
            return
        elif u != self.u + 1:
            self.valid = False
            return
        else:
            for p, s in bids:
                if s:
                    self.bids[p] = s
                else:
                    self.bids.pop(p, None)
            for p, s in asks:
                if s:
                    self.asks[p] = s
                else:
                    self.asks.pop(p, None)
            self.u = u
        # depth window
        for p in sorted(self.bids, reverse=True)[self.depth :]:
            del self.bids[p]
        for p in sorted(self.asks)[self.depth :]:
            del self.asks[p]
        if self.bids and self.asks and max(self.bids) >= min(self.asks):
            self.valid = False

    def levels(self):
        return (
            sorted(self.bids.items(), key=lambda x: -x[0]),
            sorted(self.asks.items()),
        )


def _ev(snapshot, bids, asks, u, seq=0):
    return BookUpdate("X", 0, snapshot, bids, asks, u, seq, u, u, u)


# A valid stream: a mid random walk; bids strictly below asks by construction.
@st.composite
def valid_stream(draw):
    depth = draw(st.sampled_from([1, 3, 5, 50]))
    mid = 1000
    n = draw(st.integers(1, 40))
    frames = []
    bids = {mid - i: draw(st.integers(1, 9)) for i in range(1, depth + 3)}
    asks = {mid + i: draw(st.integers(1, 9)) for i in range(0, depth + 2)}
    frames.append((True, list(bids.items()), list(asks.items())))
    cur_b, cur_a = dict(bids), dict(asks)
    for _ in range(n):
        shift = draw(st.integers(-2, 2))
        mid += shift
        nb, na = [], []
        # upserts/deletes that keep the book uncrossed: bids < mid <= asks
        for p in list(cur_b):
            if p >= mid:
                nb.append((p, 0))
                del cur_b[p]
        for p in list(cur_a):
            if p < mid:
                na.append((p, 0))
                del cur_a[p]
        for _ in range(draw(st.integers(0, 6))):
            off = draw(st.integers(1, depth + 4))
            size = draw(st.integers(0, 9))
            if draw(st.booleans()):
                nb.append((mid - off, size))
                if size:
                    cur_b[mid - off] = size
                else:
                    cur_b.pop(mid - off, None)
            else:
                na.append((mid + off - 1, size))
                if size:
                    cur_a[mid + off - 1] = size
                else:
                    cur_a.pop(mid + off - 1, None)
        frames.append((False, nb, na))
    return depth, frames


@settings(max_examples=300, deadline=None)
@given(valid_stream())
@books
def test_valid_streams_match_naive_book(OrderBook, stream):
    depth, frames = stream
    book = OrderBook("X", depth)
    ref = NaiveBook(depth)
    for u, (snap, b, a) in enumerate(frames, start=1):
        book.apply(_ev(snap, b, a, u + 100))
        ref.feed(snap, b, a, u + 100)
        assert book.live == ref.valid
        if ref.valid:
            rb, ra = ref.levels()
            assert book.bid_levels() == rb
            assert book.ask_levels() == ra
            assert book.best_bid == (rb[0][0] if rb else None)
            assert book.best_ask == (ra[0][0] if ra else None)
            for k in (1, 3):
                assert book.top_of_book(k) == (rb[0][0] if rb else None, ra[0][0] if ra else None,
                                               rb[0][1] if rb else 0, ra[0][1] if ra else 0,
                                               sum(s for _, s in rb[:k]), sum(s for _, s in ra[:k]))


@st.composite
def any_stream(draw):
    """Arbitrary streams: random u (gaps, duplicates, resets), random levels (may cross)."""
    depth = draw(st.sampled_from([1, 2, 5]))
    frames = []
    u = draw(st.integers(2, 50))
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["next", "next", "next", "gap", "dup", "snap"]))
        if kind == "next":
            u += 1
        elif kind == "gap":
            u += draw(st.integers(2, 5))
        elif kind == "dup":
            u -= draw(st.integers(0, 2))
        else:
            u += 1
        lv = st.lists(st.tuples(st.integers(990, 1010), st.integers(0, 5)), max_size=6)
        frames.append((kind == "snap" or not frames, draw(lv), draw(lv), max(u, 2)))
    return depth, frames


@settings(max_examples=400, deadline=None)
@given(any_stream())
@books
def test_invalid_streams_never_leave_a_wrong_live_book(OrderBook, stream):
    depth, frames = stream
    book = OrderBook("X", depth)
    ref = NaiveBook(depth)
    for snap, b, a, u in frames:
        r = book.apply(_ev(snap, b, a, u))
        ref.feed(snap, b, a, u)
        if book.live:
            # LIVE implies: exactly the reference book, and not crossed.
            assert ref.valid
            rb, ra = ref.levels()
            assert book.bid_levels() == rb and book.ask_levels() == ra
            if rb and ra:
                assert rb[0][0] < ra[0][0]
        if r in (Applied.GAP, Applied.CROSSED):
            assert book.state == BookState.RESYNCING


@books
def test_gap_then_snapshot_recovers(OrderBook):
    book = OrderBook("X", 5)
    book.request_sync()
    assert book.state == BookState.SYNCING
    assert book.apply(_ev(True, [(99, 1)], [(101, 1)], 10)) == Applied.SNAPSHOT
    assert book.apply(_ev(False, [(98, 2)], [], 11)) == Applied.OK
    assert book.apply(_ev(False, [(98, 3)], [], 11)) == Applied.STALE
    assert book.apply(_ev(False, [(97, 3)], [], 13)) == Applied.GAP
    assert book.state == BookState.RESYNCING and "gap" in book.reason
    assert book.apply(_ev(False, [(97, 3)], [], 14)) == Applied.IGNORED
    assert book.apply(_ev(True, [(99, 1)], [(100, 1)], 20)) == Applied.SNAPSHOT
    assert book.live and book.best_bid == 99 and book.best_ask == 100


@books
def test_crossed_delta_and_seq_backwards_resync(OrderBook):
    book = OrderBook("X", 5)
    book.apply(_ev(True, [(99, 1)], [(101, 1)], 10, seq=500))
    assert book.apply(_ev(False, [(101, 1)], [], 11, seq=501)) == Applied.CROSSED
    assert not book.live
    book.apply(_ev(True, [(99, 1)], [(101, 1)], 20, seq=600))
    assert book.apply(_ev(False, [(98, 1)], [], 21, seq=599)) == Applied.SEQ_BACK
    assert not book.live


@books
def test_u1_resets_and_delete_of_absent_level_is_ignored(OrderBook):
    book = OrderBook("X", 5)
    book.apply(_ev(True, [(99, 1), (98, 1)], [(101, 1)], 10))
    assert book.apply(_ev(False, [(50, 0)], [(200, 0)], 11)) == Applied.OK
    assert book.apply(_ev(False, [(90, 4)], [(110, 4)], 1)) == Applied.SNAPSHOT
    assert book.bid_levels() == [(90, 4)] and book.ask_levels() == [(110, 4)]


@books
def test_stale_check_uses_the_receive_clock(OrderBook):
    book = OrderBook("X", 5)
    book.apply(_ev(True, [(99, 1)], [(101, 1)], 10))  # recv_ns = 10
    assert not book.check_stale(now_ns=10 + 1_000_000_000, max_age_ms=1000)
    assert book.check_stale(now_ns=10 + 1_000_000_001, max_age_ms=1000)
    assert not book.live and "stale" in book.reason
