"""Crash test of the ledger with a real ``mmd replay`` process (issue "paper venue / ledger").

A real ``python -m daemon.cli replay --ledger L`` replaying the bundled BTCUSDT recording is SIGKILLed
at random moments (seeded), at least 20 times, and restarted each time. After every kill:

* the journal is a prefix of the journal of a separate, uninterrupted run of the same replay (same
  rows: ids, kinds, times, bodies, in the same order), and it never shrinks (nothing committed is lost);
* no fill id appears twice;
* the positions :meth:`Ledger.restore` folds equal the plain sum of ``side * qty`` of the journalled fills;
* the ledger holds exactly one run (every restart continued the same deterministic run id).

Finally one run completes (exit 0): its journal digest equals the uninterrupted run's, and so does its
summary. ``test_checks_flag_doctored_journals`` proves the checks can fail.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import pytest

from daemon.paper.inventory import BookedFill
from daemon.paper.ledger import Ledger, journal_digest, open_readonly, validate_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYM = "BTCUSDT"
# ~150 fills (default config gives ~70) and small, frequent batches (~90 transactions per run): many
# batch boundaries for a kill to land between. The same env for every run (the run id hashes the config).
SCENARIO_ENV = {"MMD_QUOTER__GAMMA": "0.0001", "MMD_LEDGER__BATCH_MAX": "64", "MMD_LEDGER__FLUSH_INTERVAL_MS": "10"}
MIN_KILLS = 20
SEED = 20240808
RUN_TIMEOUT_S = 120.0

_fill_dec = msgspec.msgpack.Decoder(BookedFill)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMD_")}
    env.update(SCENARIO_ENV)
    return env


def _start(ledger: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "replay", "--ledger", ledger, "--no-progress", *extra],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _rows(path: str, run_id: str) -> list[tuple]:
    """The run's journal rows ``(rec_id, kind, symbol, ts_ms, pos, body)`` in commit order (read-only)."""
    c = open_readonly(path)
    try:
        return c.execute(
            "SELECT rec_id, kind, symbol, ts_ms, pos, body FROM journal WHERE run_id = ? ORDER BY seq", (run_id,)
        ).fetchall()
    finally:
        c.close()


def _counts(path: str) -> dict[str, int]:
    """Row counts of the ledger's tables plus its sessions (read-only); zeros when there is no usable
    ledger yet (absent file, or one killed before its schema transaction committed)."""
    if not os.path.exists(path) or validate_file(path) == "new":
        return {"journal": 0, "starts": 0, "batches": 0, "max_batch": 0, "sessions": []}
    c = open_readonly(path)
    try:
        out = {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("journal", "starts", "batches")}
        out["max_batch"] = c.execute("SELECT COALESCE(MAX(batch_id), 0) FROM batches").fetchone()[0]
        out["sessions"] = c.execute("SELECT run_id, mode FROM sessions").fetchall()
        return out
    finally:
        c.close()


def journal_problems(rows: list[tuple], ref_rows: list[tuple], position_lots: int, n_fills: int) -> list[str]:
    """Everything wrong with a (crashed) journal ``rows`` against the uninterrupted run's ``ref_rows``,
    given the position and fill count :meth:`Ledger.restore` folded from it. Empty list = healthy."""
    problems = []
    if len(rows) > len(ref_rows):
        problems.append(f"prefix: {len(rows)} rows, longer than the uninterrupted run's {len(ref_rows)}")
    for i, (a, b) in enumerate(zip(rows, ref_rows)):
        if a != b:
            problems.append(f"prefix: row {i} is {a[:2]}, the uninterrupted run has {b[:2]} (or another body)")
            break
    fills = [_fill_dec.decode(r[5]) for r in rows if r[1] == "fill"]
    dup = [k for k, n in Counter(f.fill_id for f in fills).items() if n > 1]
    if dup:
        problems.append(f"duplicate fill ids: {dup[:3]}")
    dup_rec = [k for k, n in Counter(r[0] for r in rows).items() if n > 1]
    if dup_rec:
        problems.append(f"duplicate record ids: {dup_rec[:3]}")
    bad_kind = [r[0] for r in rows if r[1] == "fill" and _fill_dec.decode(r[5]).fill_id != r[0]]
    if bad_kind:
        problems.append(f"fill rows whose rec_id is not their fill_id: {bad_kind[:3]}")
    summed = sum(f.side * f.qty for f in fills)
    if summed != position_lots:
        problems.append(f"position: restore() says {position_lots} lots, the fills sum to {summed}")
    if n_fills != len(fills):
        problems.append(f"fill count: restore() folded {n_fills} fills, the journal has {len(fills)}")
    return problems


def check_ledger(path: str, run_id: str, ref_rows: list[tuple]) -> tuple[list[tuple], list[str]]:
    """Open the ledger like a restart does (``Ledger.open`` + ``restore()``), close it, and check it."""
    rows = _rows(path, run_id)
    with Ledger.open(path, run_id, "replay") as led:  # validates, recovers the WAL; journals nothing
        st = led.restore()
    book = st.inventory.books.get(SYM)
    pos, n = (book.position_lots, book.n_fills) if book is not None else (0, 0)
    return rows, journal_problems(rows, ref_rows, pos, n)


@dataclass
class Reference:
    path: str
    run_id: str
    rows: list[tuple]
    digest: str
    summary: dict
    appended: int  # records one whole run appends (the writer's last ``last_append``)
    t_total: float  # s from spawn until exit
    extra: dict = field(default_factory=dict)


def _summary_sans_timing(s: dict) -> dict:
    # timing, and the ledger file named in the summary (each run here writes its own)
    return {k: v for k, v in s.items() if k not in ("seconds", "frames_per_s", "ledger")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    """One uninterrupted replay into a fresh ledger."""
    path = str(tmp_path_factory.mktemp("crash_ref") / "ref.sqlite")
    t0 = time.monotonic()
    proc = _start(path, "--json")
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the uninterrupted replay did not finish")
    t_total = time.monotonic() - t0
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out)
    c = _counts(path)
    assert len(c["sessions"]) == 1 and c["sessions"][0][1] == "replay", c["sessions"]
    run_id = c["sessions"][0][0]
    assert run_id.startswith("replay-")
    rows = _rows(path, run_id)
    conn = open_readonly(path)
    try:
        digest = journal_digest(conn, run_id)
        appended, inserted, n_batches = conn.execute(
            "SELECT MAX(last_append), SUM(n_inserted), COUNT(*) FROM batches").fetchone()
    finally:
        conn.close()
    assert appended == inserted == len(rows) - 1  # every appended record once; + the instrument row of the open
    kinds = Counter(r[1] for r in rows)
    assert kinds["fill"] == summary["symbols"][SYM]["fills"] >= 100, kinds
    rows_again, problems = check_ledger(path, run_id, rows)
    assert problems == [] and rows_again == rows
    return Reference(path, run_id, rows, digest, summary, appended, t_total,
                     {"kinds": dict(kinds), "batches": n_batches})


def _schedule(rnd: random.Random, t_total: float) -> list[tuple[str, str, float]]:
    """The kills ``(label, trigger, value)``: trigger ``time`` = SIGKILL ``value`` s after spawn;
    ``progress`` = SIGKILL a random 0-20 ms after this process made the first ``value`` fraction of
    its records durable (load-independent, so the kill lands mid-run however busy the machine is).
    2 before the ledger exists (<= 0.1 s: the interpreter and imports alone take longer); 14 while
    writing, in ascending order (each kill cuts the journal at a new place; a re-run first re-commits,
    ignored by id, what the previous runs made durable), plus 2 anywhere in the run mixed in; 2 at
    random wall times; 3 near the end (after 90-97 % of the records are durable: the rest takes ~30 ms)."""
    sched = [("before-ledger", "time", rnd.uniform(0.01, 0.1)) for _ in range(2)]
    sched += [("writing", "progress", f) for f in sorted(rnd.uniform(0.01, 0.9) for _ in range(14))]
    for _ in range(2):
        sched.insert(rnd.randrange(3, len(sched)), ("writing-any", "progress", rnd.uniform(0.01, 0.9)))
    for _ in range(2):  # in the second half, and at most half a reference run: rarely after the end
        at = rnd.randrange(len(sched) // 2, len(sched))
        sched.insert(at, ("random-time", "time", rnd.uniform(0.0, 0.5 * t_total)))
    sched += [("near-end", "progress", f) for f in sorted(rnd.uniform(0.9, 0.97) for _ in range(3))]
    return sched


def _durable_appends(path: str, conn: list, after_batch: int) -> int:
    """Records this run made durable so far (``last_append`` of its newest batch), polled read-only;
    0 while there is no readable ledger yet. ``conn`` caches the connection."""
    try:
        if not conn:
            if not os.path.exists(path):
                return 0
            conn.append(sqlite3.connect("file:" + path + "?mode=ro", uri=True, isolation_level=None, timeout=0.1))
        r = conn[0].execute("SELECT MAX(last_append) FROM batches WHERE batch_id > ?", (after_batch,)).fetchone()
        return r[0] or 0
    except sqlite3.Error:
        return 0


def test_sigkilled_replay_restarts_into_the_uninterrupted_journal(reference, tmp_path):
    ref = reference
    path = str(tmp_path / "crashed.sqlite")
    rnd = random.Random(SEED)
    sched = _schedule(rnd, ref.t_total)
    n_ref = len(ref.rows)
    stats = Counter()
    log = []
    prev = _counts(path)
    i = 0
    while stats["kills"] < MIN_KILLS or i < len(sched):
        assert i < len(sched) + 20, f"could not land {MIN_KILLS} kills: {dict(stats)}"
        label, trigger, value = sched[i] if i < len(sched) else ("extra", "progress", rnd.uniform(0.01, 0.9))
        i += 1
        target = int(value * ref.appended)
        jitter = rnd.uniform(0.0, 0.02)
        proc = _start(path, "--json")
        t0 = time.monotonic()
        poll: list = []
        try:
            while proc.poll() is None:
                if trigger == "time":
                    if time.monotonic() - t0 >= value:
                        break
                elif _durable_appends(path, poll, prev["max_batch"]) >= target:
                    time.sleep(jitter)
                    break
                if time.monotonic() - t0 > RUN_TIMEOUT_S:
                    break
                time.sleep(0.001 if trigger == "time" else 0.002)
        finally:
            for c in poll:
                c.close()
        killed = proc.poll() is None
        t_kill = time.monotonic() - t0
        if killed:
            os.kill(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("a replay process did not exit")
        if killed:
            assert proc.returncode == -signal.SIGKILL
            stats["kills"] += 1
        else:  # finished before the kill: it must have succeeded
            assert proc.returncode == 0, err[-2000:]
            stats["finished_before_kill"] += 1
        c = _counts(path)
        n = c["journal"]
        if label == "before-ledger" and killed:
            stats["before_ledger_kills"] += n == 0 and c["starts"] == 0
        if c["starts"] == 0:
            assert n == 0 and c["sessions"] == [], c  # no usable ledger yet: nothing can be in it
        else:
            assert c["sessions"] == [(ref.run_id, "replay")], c["sessions"]  # one run, continued each time
            rows, problems = check_ledger(path, ref.run_id, ref.rows)
            assert problems == [], f"after kill {stats['kills']} ({label} {value:.3f}): {problems}"
            assert len(rows) == n
        assert n >= prev["journal"], f"the journal shrank from {prev['journal']} to {n} rows"
        if killed:
            stats["killed_before_open"] += c["starts"] == prev["starts"]
            stats["mid_write"] += 0 < n < n_ref
            stats["advanced_journal"] += prev["journal"] < n < n_ref
            stats["committed_a_batch_then_killed"] += c["batches"] > prev["batches"]
            stats["complete_at_kill"] += n == n_ref
        log.append((label, round(value, 3), round(t_kill, 2), killed, n))
        prev = c
    # finally one run to completion: the journal equals the uninterrupted run's
    before = _counts(path)["journal"]
    proc = _start(path, "--json")
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, err[-2000:]
    rows, problems = check_ledger(path, ref.run_id, ref.rows)
    assert problems == []
    assert rows == ref.rows
    conn = open_readonly(path)
    try:
        assert journal_digest(conn, ref.run_id) == ref.digest
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
        starts = conn.execute("SELECT count(*) FROM starts WHERE run_id = ?", (ref.run_id,)).fetchone()[0]
    finally:
        conn.close()
    assert _summary_sans_timing(json.loads(out)) == _summary_sans_timing(ref.summary)
    report = (f"crash test: {dict(stats)}; journal {before}/{n_ref} rows before the final run; "
              f"{starts} ledger starts (incl. inspections); reference run {ref.t_total:.2f} s, {ref.appended} records "
              f"in {ref.extra['batches']} batches, {ref.extra['kinds'].get('fill')} fills\n"
              f"schedule (label, s or fraction, s at kill, killed, rows after): {log}")
    print("\n" + report)
    assert stats["kills"] >= MIN_KILLS, report
    assert stats["before_ledger_kills"] >= 1, report  # at least one kill landed before the ledger existed
    assert stats["mid_write"] >= MIN_KILLS // 2, report  # kills really landed while the journal was being written
    assert stats["advanced_journal"] >= 5, report  # ...and cut it at new places
    assert before < n_ref or stats["complete_at_kill"] > 0, report


def test_checks_flag_doctored_journals(reference, tmp_path):
    """The checks above can fail: doctored copies of a real replay ledger are flagged, a genuine
    prefix is not."""
    ref = reference
    fill_idx = [i for i, r in enumerate(ref.rows) if r[1] == "fill"]
    k = fill_idx[len(fill_idx) // 2]  # a fill in the middle of the journal

    def doctored(name: str, *sql: tuple) -> list[str]:
        p = str(tmp_path / f"{name}.sqlite")
        src = sqlite3.connect(ref.path)
        dst = sqlite3.connect(p)
        src.backup(dst)
        src.close()
        for stmt in sql:
            dst.execute(*stmt)
        dst.commit()
        dst.close()
        return check_ledger(p, ref.run_id, ref.rows)[1]

    seq_k = f"(SELECT seq FROM journal WHERE run_id = '{ref.run_id}' AND rec_id = ?)"
    # a genuine prefix (a crash right after the transaction that committed row k) is healthy
    assert doctored("prefix", (f"DELETE FROM journal WHERE seq > {seq_k}", (ref.rows[k][0],))) == []
    # the same prefix with the fill journalled a second time under another id (what a writer bug would do)
    p = doctored(
        "dup",
        (f"DELETE FROM journal WHERE seq > {seq_k}", (ref.rows[k][0],)),
        ("INSERT INTO journal(run_id, rec_id, kind, symbol, ts_ms, pos, body) SELECT run_id, rec_id || '#2', kind, "
         "symbol, ts_ms, pos, body FROM journal WHERE rec_id = ?", (ref.rows[k][0],)),
    )
    assert any(x.startswith("duplicate fill ids") for x in p), p
    assert any(x.startswith("position") for x in p), p  # restore() ignores the duplicate, the sum does not
    assert any(x.startswith("prefix") for x in p), p
    # a hole: one order event lost before later rows were committed
    hole = next(r[0] for r in ref.rows[:k] if r[1] == "order")
    p = doctored("hole", ("DELETE FROM journal WHERE rec_id = ?", (hole,)))
    assert any(x.startswith("prefix") for x in p), p
    # a fill with its side flipped: the journal is no longer the uninterrupted run's
    flipped = _fill_dec.decode(ref.rows[k][5])
    flipped.side = -flipped.side
    body = msgspec.msgpack.encode(flipped)
    p = doctored("flip", ("UPDATE journal SET body = ? WHERE rec_id = ?", (body, ref.rows[k][0])))
    assert any(x.startswith("prefix") for x in p), p
    # the pure check: a restored position that disagrees with the fills, and a journal longer than the reference
    assert any(x.startswith("position") for x in journal_problems(ref.rows, ref.rows, 12345, len(fill_idx)))
    assert any(x.startswith("fill count") for x in journal_problems(ref.rows, ref.rows, _sum(ref.rows), 0))
    assert journal_problems(ref.rows, ref.rows, _sum(ref.rows), len(fill_idx)) == []
    longer = ref.rows + [("extra",) + ref.rows[-1][1:]]
    assert any(x.startswith("prefix") for x in journal_problems(longer, ref.rows, _sum(ref.rows), len(fill_idx)))


def _sum(rows: list[tuple]) -> int:
    return sum(f.side * f.qty for f in (_fill_dec.decode(r[5]) for r in rows if r[1] == "fill"))


def test_rerun_without_json_flag_continues_the_same_run(reference, tmp_path):
    """The output flag is not part of the replay's identity: an interrupted ``mmd replay --json`` re-run
    as plain ``mmd replay`` (or the reverse) continues the same run and dedups into its journal."""
    p = str(tmp_path / "rerun.sqlite")
    src, dst = sqlite3.connect(reference.path), sqlite3.connect(p)
    src.backup(dst)
    src.close()
    dst.execute("DELETE FROM journal WHERE seq > (SELECT MAX(seq) / 2 FROM journal)")  # an interrupted run
    dst.commit()
    dst.close()
    proc = _start(p)  # no --json
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, err[-2000:]
    c = open_readonly(p)
    try:
        assert c.execute("SELECT run_id FROM sessions").fetchall() == [(reference.run_id,)]
        assert journal_digest(c, reference.run_id) == reference.digest
    finally:
        c.close()
