"""Durable SQLite ledger: restart, idempotence, refusal of foreign/corrupt files, crash safety."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from daemon.core.book import OrderBook
from daemon.core.events import BUY, SELL, BookUpdate, Fill, Quote, Trade
from daemon.core.instrument import btcusdt_linear
from daemon.risk import RiskEvent
from daemon.paper.inventory import BookedFill, Inventory, Mark, Markout, MarkSampler
from daemon.paper.ledger import (
    APPLICATION_ID,
    Ledger,
    LedgerError,
    ResumeRequest,
    validate_file,
    write_resume,
)
from daemon.execution.models import ConstantLatency, ProbQueue
from daemon.execution.paper import PaperVenue
from daemon.paper.inventory import Funding

INS = btcusdt_linear()
SYM = INS.symbol
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _inline(seed, n_steps, ledger):
    rnd = random.Random(seed)
    book = OrderBook(SYM, 50)
    venue = PaperVenue(INS, latency=ConstantLatency(10, 10), queue=ProbQueue(2.0))
    inv = Inventory({SYM: INS})
    marks = MarkSampler(1000)
    journal: list = []

    def put(recs):
        for x in recs:
            if isinstance(x, Fill):
                x = inv.apply_fill(x)
                if x is None:
                    continue
            elif isinstance(x, Funding):
                inv.apply_funding(x)
            journal.append(x)
            if ledger is not None:
                ledger.append(x)

    mid = 600000
    u = 1
    t = 1_723_100_000_000
    book.apply(BookUpdate(SYM, 50, True, [(mid - 1, 5), (mid - 2, 9)], [(mid + 1, 5), (mid + 2, 9)], u, u, t, 0, 0))
    put(inv.on_mid(SYM, t, mid * 0.1))
    put(inv.on_ticker(SYM, {"fundingRate": "0.0001", "nextFundingTime": str(t + 30_000), "markPrice": "60000"}, t))
    for i in range(n_steps):
        t += rnd.randint(20, 400)
        r = rnd.random()
        if r < 0.35:
            mid += rnd.choice((-1, 1))
            u += 1
            book.apply(BookUpdate(SYM, 50, True, [(mid - 1, rnd.randint(1, 9))], [(mid + 1, rnd.randint(1, 9))], u, u, t, 0, 0))
            put(venue.on_book(book))
            m = (book.best_bid + book.best_ask) / 2 * 0.1
            put(inv.on_mid(SYM, t, m))
            if marks.due(SYM, t):
                w = venue.working
                put([Mark(f"mark:{SYM}:{t}", SYM, t, m, w[BUY].price if w[BUY] else None, w[SELL].price if w[SELL] else None, inv.position_lots(SYM), i)])
        elif r < 0.7:
            side = rnd.choice((BUY, SELL))
            px = (book.best_ask if side == BUY else book.best_bid) + side * rnd.choice((0, 0, 1))
            put(venue.on_trade(Trade(SYM, side, px, rnd.randint(1, 12), f"T{i}", i, t, 0), book))
        else:
            skew = inv.position_lots(SYM) // 10
            put(venue.on_quote(Quote(SYM, book.best_bid - skew, 3, book.best_ask - skew, 3, t), book))
        put(inv.on_ticker(SYM, {}, t))  # funding settles when due
    return inv, journal


def run_inline(ledger=None, n_steps=400, seed=7):
    return _inline(seed, n_steps, ledger)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "ledger.sqlite")


def open_ledger(path, run="r1", mode="replay", **kw):
    kw.setdefault("flush_interval_ms", 5)
    return Ledger.open(path, run, mode, instruments={SYM: INS}, **kw)


# --------------------------------------------------------------------------------------------


def test_restart_restores_positions_and_pnl_exactly(path):
    led = open_ledger(path)
    inv, journal = run_inline(led)
    assert any(isinstance(x, BookedFill) for x in journal) and any(isinstance(x, Funding) for x in journal)
    assert inv.books[SYM].n_fills > 5
    assert led.flush(5.0) and led.healthy
    led.close()
    led2 = open_ledger(path)
    st = led2.restore()
    assert st.inventory.state() == inv.state()  # exact: same fold, same order
    assert st.inventory.pnl(SYM) == inv.pnl(SYM)
    # the restored equity path is sampled at marks and fills only: its drawdown cannot exceed the live one
    assert st.inventory.max_drawdown <= inv.max_drawdown + 1e-9
    assert st.last_seq == len(journal) + 1  # + the instrument record
    assert st.records == 1 + sum(not isinstance(x, Markout) for x in journal)  # markouts are not folded
    # order ids continue after the highest journalled one
    last_n = max(int(x.order_id.rsplit("-", 1)[1]) for x in journal if hasattr(x, "order_id"))
    assert st.next_order_n[SYM] == last_n + 1
    assert st.last_pos == max(x.pos for x in journal if isinstance(x, Mark))
    assert led2.last_position_marker() == st.last_pos
    led2.close()


def test_pnl_identity_after_restore(path):
    led = open_ledger(path)
    inv, _ = run_inline(led)
    led.close()
    with open_ledger(path) as led2:
        p = led2.restore().inventory.pnl(SYM)
    assert p.total == pytest.approx(p.spread + p.inventory - p.fees - p.funding)
    assert p.total == pytest.approx(p.realized + p.unrealized - p.fees - p.funding)


def test_duplicate_fill_is_ignored(path):
    f = BookedFill("BTCUSDT-1:T9", SYM, "BTCUSDT-1", BUY, 600000, 5, 0.06, "T9", 1000, 60000.05)
    with open_ledger(path) as led:
        led.append(f)
        led.append(f)
        assert led.flush()
        assert len(led.records("fill")) == 1
    with open_ledger(path) as led:  # again after a restart
        led.append(f)
        assert led.flush()
        st = led.restore()
        assert len(led.records("fill")) == 1
    assert st.inventory.books[SYM].position_lots == 5 and st.inventory.books[SYM].n_fills == 1
    inv = Inventory({SYM: INS})
    assert inv.apply_fill(f) is not None and inv.apply_fill(f) is None and inv.duplicates == 1


def _bytes(p):
    with open(p, "rb") as fh:
        return fh.read()


def _refused(p, match):
    before = _bytes(p)
    with pytest.raises(LedgerError, match=match) as ei:
        Ledger.open(p, "r1", "live")
    assert "\n" not in str(ei.value)
    assert _bytes(p) == before  # never touched
    return str(ei.value)


def test_non_sqlite_file_is_refused_untouched(tmp_path):
    p = str(tmp_path / "notes.txt")
    with open(p, "wb") as fh:
        fh.write(b"this is not a database\n" * 100)
    _refused(p, "not an SQLite database")


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    p = str(tmp_path / "other.db")
    c = sqlite3.connect(p)
    c.execute("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
    c.execute("INSERT INTO users(name) VALUES ('alice')")
    c.commit()
    c.close()
    _refused(p, "another application")
    # an application_id of someone else with no tables is foreign too
    p2 = str(tmp_path / "other2.db")
    c = sqlite3.connect(p2)
    c.execute("PRAGMA application_id = 12345")
    c.execute("CREATE TABLE journal(x)")
    c.commit()
    c.close()
    _refused(p2, "another application")


def test_corrupted_ledger_is_refused_untouched(path):
    with open_ledger(path) as led:
        for i in range(3000):
            led.append(Mark(f"m{i}", SYM, i, 60000.0 + i, 600000, 600001, i, i))
    c = sqlite3.connect(path)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    size = os.path.getsize(path)
    assert size > 20 * 4096
    with open(path, "r+b") as fh:  # scribble over interior pages
        for off in range(4096 * 3, size - 4096, 4096 * 5):
            fh.seek(off + 8)
            fh.write(os.urandom(1500))
    msg = _refused(path, "corrupt")
    assert path in msg


def test_newer_schema_is_refused(path):
    open_ledger(path).close()
    c = sqlite3.connect(path)
    c.execute("PRAGMA user_version = 99")
    c.close()
    _refused(path, "newer")


def test_blank_sqlite_file_and_schema_markers(path, tmp_path):
    p = str(tmp_path / "blank.db")
    sqlite3.connect(p).close()  # 0-byte file
    with Ledger.open(p, "x", "live"):
        pass
    assert validate_file(p) == "ok"
    c = sqlite3.connect(p)
    assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert c.execute("PRAGMA user_version").fetchone()[0] == 1
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    c.close()


def test_run_mode_mismatch_and_several_runs(path):
    with open_ledger(path, run="a", mode="replay") as led:
        run_inline(led, n_steps=200, seed=1)
    with pytest.raises(LedgerError, match="replay run"):
        open_ledger(path, run="a", mode="live")
    with open_ledger(path, run="b", mode="live") as led:
        inv_b, _ = run_inline(led, n_steps=200, seed=2)
        assert led.flush()
        st_b = led.restore()
        st_a = led.restore("a")
    assert st_b.inventory.state() == inv_b.state()
    assert st_a.inventory.state() != st_b.inventory.state()  # runs do not mix
    c = sqlite3.connect(path)
    assert dict(c.execute("SELECT run_id, mode FROM sessions")) == {"a": "replay", "b": "live"}
    c.close()


def test_durable_seq_and_callback(path):
    seen: list[int] = []
    led = open_ledger(path, batch_max=10, on_durable=seen.append)
    seqs = [led.append(Mark(f"m{i}", SYM, i, 1.0, None, None, 0)) for i in range(35)]
    assert seqs == list(range(1, 36))
    assert led.flush(5.0)
    assert led.durable_seq == 35 and seen[-1] == 35 and seen == sorted(seen)
    assert led.backlog == 0
    led.close()


def test_disk_full_is_an_error_state_records_kept_and_retried(path):
    led = open_ledger(path, batch_max=50, retry_base_ms=5)
    led.append(Mark("m0", SYM, 0, 1.0, None, None, 0))
    assert led.flush(5.0)
    c = sqlite3.connect(path)
    pages = c.execute("PRAGMA page_count").fetchone()[0]
    c.close()
    led._max_page_count = pages  # the "disk" is full now
    blob = "x" * 3000
    for i in range(200):
        led.append(RiskEvent(f"r{i}", "pause", "book_stale", SYM, i, detail=blob))
    assert not led.flush(1.0)  # cannot commit
    assert led.error is not None and "full" in led.error.lower() and led.write_errors >= 1
    assert led.backlog == 200  # kept in memory, nothing lost
    assert led.problem == led.error  # what the risk gate is given
    n_before = led.appended_seq
    led.append(Mark("m1", SYM, 1, 1.0, None, None, 0))  # appending still works (never waits on disk)
    assert led.appended_seq == n_before + 1
    led._max_page_count = 1_000_000  # space is back
    assert led.flush(10.0)
    assert led.error is None and led.backlog == 0 and led.problem is None
    assert len(led.records("risk")) == 200 and len(led.records("mark")) == 2
    led.close()


def test_resume_request_is_seen_by_running_and_restarted_daemon(path):
    led = open_ledger(path, run="live1", mode="live")
    led.append(RiskEvent("risk:1", "trip", "max_drawdown", "*", 1000, 600.0, 500.0, "max_drawdown *: 600 > 500"))
    assert led.flush()
    assert led.restore().risk_tripped
    assert led.poll_resumes() == []
    req = write_resume(path, "live1", "operator ok")
    got = led.poll_resumes()
    assert [r.resume_id for r in got] == [req.resume_id] and isinstance(got[0], ResumeRequest)
    assert led.poll_resumes() == []  # each request delivered once
    led.close()
    with open_ledger(path, run="live1", mode="live") as led2:
        st = led2.restore()
    assert not st.risk_tripped
    with pytest.raises(LedgerError):
        write_resume(str(path) + ".missing")


# --------------------------------------------------------------------------------------------
# crash safety with a real process killed by SIGKILL
# --------------------------------------------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from daemon.paper.inventory import Mark
    from daemon.paper.ledger import Ledger
    led = Ledger.open({path!r}, "crash", "replay", batch_max=7, flush_interval_ms=1)
    i = 0
    while True:
        led.append(Mark("r%d" % i, "BTCUSDT", i, float(i), None, None, 0, i))
        i += 1
        if led.backlog > led.max_backlog:
            # the producer contract (module docstring): above max_backlog a replay blocks in flush
            # and a live engine pauses quoting. A tight loop that ignores it starves the writer
            # thread of the GIL and grows the queue by millions of records (gigabytes, slow GC).
            led.flush(5)
        if i % 50 == 0:
            print(led.durable_seq, flush=True)
    """
)


def test_sigkilled_writer_leaves_whole_batches_only(path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER.format(root=ROOT, path=path)], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        durable = 0
        while durable <= 300:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"writer made only {durable} records durable in 60 s"
            durable = int(line)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert validate_file(path) == "ok"  # readable, not corrupt
    c = sqlite3.connect("file:" + path + "?mode=ro", uri=True)
    ids = [r[0] for r in c.execute("SELECT rec_id FROM journal WHERE kind='mark' ORDER BY seq")]
    batches = c.execute("SELECT first_append, last_append, n_records, n_inserted FROM batches ORDER BY batch_id").fetchall()
    c.close()
    assert len(ids) > 300
    assert ids == [f"r{i}" for i in range(len(ids))]  # a prefix of the appended stream: no holes
    assert sum(b[3] for b in batches) == len(ids)  # every committed row belongs to a whole batch
    for prev, nxt in zip(batches, batches[1:]):
        assert nxt[0] == prev[1] + 1  # batches are contiguous
    assert all(b[2] == b[1] - b[0] + 1 == b[3] for b in batches)
    assert batches[-1][1] == len(ids)
    # and the ledger opens and continues
    with Ledger.open(path, "crash", "replay") as led:
        assert len(led.records("mark")) == len(ids)


_REPLAY = textwrap.dedent(
    """
    import sys, os
    sys.path.insert(0, {root!r})
    sys.path.insert(0, os.path.join({root!r}, "tests"))
    from test_paper_ledger import open_ledger, run_inline
    led = open_ledger({path!r}, run="rep", batch_max=3, flush_interval_ms=1)
    for k in range(1000000):
        run_inline(led, n_steps=400, seed=11)  # the same deterministic records again and again
        # replay backpressure, as daemon.runtime.runtime.Runtime.put does: a CPU-bound producer
        # would otherwise starve the writer thread of the GIL
        led.flush(5)
        print(led.durable_seq, flush=True)
    """
)


def test_interrupted_then_restarted_replay_equals_uninterrupted(tmp_path):
    ref = str(tmp_path / "ref.sqlite")
    with open_ledger(ref, run="rep") as led:
        run_inline(led, n_steps=400, seed=11)
        assert led.flush()
        ref_digest = led.journal_digest()
        n_ref = len(led.records())
    crashed = str(tmp_path / "crashed.sqlite")
    # stdout is not read here: a pipe would fill up and block the child (and its writer thread's
    # log lines) long before it is killed.
    proc = subprocess.Popen([sys.executable, "-c", _REPLAY.format(root=ROOT, path=crashed)], stdout=subprocess.DEVNULL,
                            text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # kill it once some batches are durable
            time.sleep(0.01)
            if not os.path.exists(crashed):
                continue
            try:
                c = sqlite3.connect("file:" + crashed + "?mode=ro", uri=True)
                n = c.execute("SELECT count(*) FROM journal").fetchone()[0]
                c.close()
            except sqlite3.Error:
                continue
            if n >= 30:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    with open_ledger(crashed, run="rep") as led:
        partial = len(led.records())
        run_inline(led, n_steps=400, seed=11)  # the restarted replay: from the start, same run id
        assert led.flush()
        assert led.journal_digest() == ref_digest
        assert len(led.records()) == n_ref
    assert 30 <= partial < n_ref  # really interrupted in the middle


def test_close_drains_the_queue_and_bad_records_are_refused_at_append(path):
    led = open_ledger(path, flush_interval_ms=1000)
    for i in range(1000):
        led.append(Mark(f"m{i}", SYM, i, 1.0, None, None, 0))
    with pytest.raises(TypeError, match="BookedFill"):
        led.append(Fill("f", SYM, "o", BUY, 1, 1, 0.0, "t", 0))
    with pytest.raises(TypeError, match="cannot journal"):
        led.append({"not": "a record"})
    assert led.appended_seq == 1000  # refused records took no sequence number
    assert led.close()
    with open_ledger(path) as led2:
        assert len(led2.records("mark")) == 1000


def test_garbage_rows_give_a_clear_error_not_a_traceback(path):
    with open_ledger(path) as led:
        led.append(Mark("m0", SYM, 0, 1.0, None, None, 0))
    c = sqlite3.connect(path)
    c.execute("INSERT INTO journal(run_id, rec_id, kind, symbol, ts_ms, pos, body) VALUES ('r1','bad','fill','BTCUSDT',1,NULL,x'c1c1')")
    c.commit()
    c.close()
    with open_ledger(path) as led:
        with pytest.raises(LedgerError, match="journal row .*undecodable fill"):
            led.restore()
    # a fill of a symbol without an instrument record
    p2 = path + "2"
    with Ledger.open(p2, "r1", "replay") as led:  # no instruments
        led.append(BookedFill("f", SYM, "o", BUY, 1, 1, 0.0, "t", 0, 1.0))
        assert led.flush()
        with pytest.raises(LedgerError, match="before any instrument record"):
            led.restore()


def test_directory_and_empty_paths(tmp_path):
    with pytest.raises(LedgerError, match="directory"):
        Ledger.open(str(tmp_path), "r", "live")
    with pytest.raises(LedgerError, match="mode"):
        Ledger.open(str(tmp_path / "x.sqlite"), "r", "paper")
    assert not os.path.exists(tmp_path / "x.sqlite")


def test_backlog_above_bound_is_a_problem(path):
    led = open_ledger(path, batch_max=4, max_backlog=10)
    blocker = sqlite3.connect(path, isolation_level=None, timeout=10)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: our writer cannot commit
    try:
        for i in range(10):
            led.append(Mark(f"m{i}", SYM, i, 1.0, None, None, 0))
        assert led.problem is None  # 10 not-yet-durable records: within the bound
        led.append(Mark("m10", SYM, 10, 1.0, None, None, 0))
        assert led.problem == "ledger backlog 11 records > 10" and led.error is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert led.flush(10.0) and led.problem is None
    led.close()
