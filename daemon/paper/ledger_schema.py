"""The ledger's SQLite file: validation, schema and migrations, connections, runs and sessions.

Schema: ``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` = schema version,
upgraded by :data:`MIGRATIONS`. Tables: ``journal`` (every record, append-only, in commit order
``seq``; ``UNIQUE(run_id, rec_id)`` and ``INSERT OR IGNORE`` make applying a record twice
impossible), ``sessions`` (one row per run id, with its ``mode`` and ``meta``), ``starts`` (every
process start), ``batches`` (one row per writer transaction) and ``meta``.

At open, a file that is not SQLite, a corrupted SQLite file (``PRAGMA quick_check``), a SQLite file of
another application (foreign ``application_id`` or foreign tables) or of a newer schema is refused
with :class:`LedgerError` (one line) and is never modified: :func:`validate_file` runs on a read-only
connection before anything is written. Read-write connections (:func:`connect`) use WAL and
``synchronous=FULL`` (why FULL: the durability rule in :mod:`daemon.paper.ledger`). Times are
wall-clock ms (``created_wall_ms``, ``wall_ms``).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid

import msgspec

from daemon.core.instrument import Instrument
from daemon.paper.ledger_records import InstrumentRecord, LedgerError, ResumeRequest, encode, row_of

APPLICATION_ID = 0x6D6D644C  # "mmdL"
SCHEMA_VERSION = 1

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE sessions(run_id TEXT PRIMARY KEY, mode TEXT NOT NULL CHECK (mode IN ('live','replay')),"
            " created_wall_ms INTEGER NOT NULL, meta TEXT NOT NULL)",
            "CREATE TABLE starts(id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, wall_ms INTEGER NOT NULL, pid INTEGER)",
            "CREATE TABLE journal(seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, rec_id TEXT NOT NULL,"
            " kind TEXT NOT NULL, symbol TEXT NOT NULL, ts_ms INTEGER NOT NULL, pos INTEGER, body BLOB NOT NULL,"
            " UNIQUE(run_id, rec_id))",
            "CREATE INDEX journal_run_kind ON journal(run_id, kind, seq)",
            "CREATE TABLE batches(batch_id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, first_append INTEGER NOT NULL,"
            " last_append INTEGER NOT NULL, n_records INTEGER NOT NULL, n_inserted INTEGER NOT NULL)",
            "INSERT INTO meta(key, value) VALUES ('app', 'mmd-ledger')",
        ],
    ),
]
_OUR_TABLES = {"meta", "sessions", "starts", "journal", "batches"}

_JOURNAL_INSERT = "INTO journal(run_id, rec_id, kind, symbol, ts_ms, pos, body) VALUES (?,?,?,?,?,?,?)"
#: insert one :func:`journal_row`; a record id already in the run is ignored (the dedup)
INSERT_OR_IGNORE = "INSERT OR IGNORE " + _JOURNAL_INSERT


def journal_row(run_id: str, rec) -> tuple:
    """The ``journal`` column values ``(run_id, rec_id, kind, symbol, ts_ms, pos, body)`` of a record
    (the order of :data:`INSERT_OR_IGNORE`). ``TypeError`` for a record the journal does not know."""
    kind, rid, sym, ts, pos = row_of(rec)
    return (run_id, rid, kind, sym, ts, pos, encode(rec))


def validate_file(path: str) -> str:
    """Check ``path`` without modifying it. Returns ``"new"`` (absent / empty / blank SQLite) or
    ``"ok"`` (an mmd ledger of a supported schema); raises :class:`LedgerError` otherwise."""
    if not os.path.exists(path):
        return "new"
    if os.path.isdir(path):
        raise LedgerError(f"ledger {path!r}: is a directory")
    if os.path.getsize(path) == 0:
        return "new"
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise LedgerError(f"ledger {path!r}: cannot read: {e.strerror}") from None
    if head != b"SQLite format 3\x00":
        raise LedgerError(f"ledger {path!r}: not an SQLite database (refusing to touch it)")
    uri = "file:" + os.path.abspath(path) + "?mode=ro"
    try:
        c = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise LedgerError(f"ledger {path!r}: cannot open read-only: {e}") from None
    try:
        app = c.execute("PRAGMA application_id").fetchone()[0]
        ver = c.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app != APPLICATION_ID:
            if not tables and app == 0 and ver == 0:
                return "new"
            raise LedgerError(
                f"ledger {path!r}: an SQLite file of another application (application_id={app:#x}, "
                f"tables={sorted(tables)[:5]}); refusing to use it"
            )
        if ver > SCHEMA_VERSION:
            raise LedgerError(f"ledger {path!r}: schema version {ver} is newer than this mmd ({SCHEMA_VERSION})")
        if ver >= 1 and not _OUR_TABLES <= tables:
            raise LedgerError(f"ledger {path!r}: missing tables {sorted(_OUR_TABLES - tables)}; refusing to use it")
        chk = c.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in chk] != ["ok"]:
            first = " ".join(str(chk[0][0]).split())[:160]
            raise LedgerError(f"ledger {path!r}: corrupted (quick_check: {first})")
        return "ok"
    except sqlite3.DatabaseError as e:
        raise LedgerError(f"ledger {path!r}: corrupted or not a database: {' '.join(str(e).split())}") from None
    finally:
        c.close()


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the :data:`MIGRATIONS` newer than the file's ``user_version``, one transaction each."""
    ver = conn.execute("PRAGMA user_version").fetchone()[0]
    for v, stmts in MIGRATIONS:
        if v <= ver:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for s in stmts:
                conn.execute(s)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {v}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def connect(path: str) -> sqlite3.Connection:
    """A read-write connection in WAL mode with ``synchronous=FULL`` (every commit fsyncs the WAL),
    usable from any thread, waiting up to 10 s for a lock. :class:`LedgerError` if WAL is refused."""
    c = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    c.execute("PRAGMA busy_timeout = 10000")
    mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LedgerError(f"ledger {path!r}: cannot enable WAL (journal_mode={mode})")
    c.execute("PRAGMA synchronous = FULL")
    return c


def open_run(path: str, run_id: str, mode: str, meta: dict | None,
             instruments: dict[str, Instrument] | None) -> sqlite3.Connection:
    """Create or upgrade the (validated) file at ``path`` and open run ``run_id`` in it, in one
    transaction: the session row (created once per run, with ``mode`` and ``meta``), a ``starts`` row
    for this process and the run's instrument records (once per symbol and run). Returns the
    connection. :class:`LedgerError` for an SQLite error or a run id that exists with another mode."""
    try:
        conn = connect(path)
        migrate(conn)
        now = int(time.time() * 1000)
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT mode FROM sessions WHERE run_id = ?", (run_id,)).fetchone()
        if row is not None and row[0] != mode:
            conn.execute("ROLLBACK")
            conn.close()
            raise LedgerError(f"ledger {path!r}: run {run_id!r} exists as a {row[0]} run, not {mode}")
        conn.execute(
            "INSERT OR IGNORE INTO sessions(run_id, mode, created_wall_ms, meta) VALUES (?,?,?,?)",
            (run_id, mode, now, msgspec.json.encode(meta or {}).decode()),
        )
        conn.execute("INSERT INTO starts(run_id, wall_ms, pid) VALUES (?,?,?)", (run_id, now, os.getpid()))
        for ins in (instruments or {}).values():
            conn.execute(INSERT_OR_IGNORE, journal_row(run_id, InstrumentRecord.of(ins)))
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        raise LedgerError(f"ledger {path!r}: {e}") from None
    return conn


def _require_ledger(path: str) -> None:
    """:class:`LedgerError` unless ``path`` is an existing, non-empty mmd ledger."""
    if not os.path.exists(path):
        raise LedgerError(f"ledger {path!r}: not found")
    if validate_file(path) != "ok":
        raise LedgerError(f"ledger {path!r}: empty, not an mmd ledger")


def open_readonly(path: str) -> sqlite3.Connection:
    """Validate then open an existing ledger read-only (reports). Raises :class:`LedgerError`."""
    _require_ledger(path)
    return sqlite3.connect("file:" + os.path.abspath(path) + "?mode=ro", uri=True, isolation_level=None)


def write_resume(path: str, run_id: str = "*", reason: str = "", wall_ms: int | None = None) -> ResumeRequest:
    """Append a :class:`ResumeRequest` to an existing ledger (used by ``mmd resume``); a running
    daemon picks it up with :meth:`Ledger.poll_resumes`, a restarted one through :meth:`Ledger.restore`.
    ``wall_ms``: the request's wall-clock time in ms (default: now)."""
    _require_ledger(path)
    wall = int(time.time() * 1000) if wall_ms is None else wall_ms
    req = ResumeRequest(f"resume:{wall}:{uuid.uuid4().hex[:8]}", run_id, wall, reason)
    try:
        conn = connect(path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT " + _JOURNAL_INSERT, journal_row(run_id, req))
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise LedgerError(f"ledger {path!r}: {e}") from None
    return req
