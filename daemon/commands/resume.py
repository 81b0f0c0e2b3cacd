"""``mmd resume LEDGER [--run RUN] [--reason TEXT]``: clear a tripped risk gate.

Appends a :class:`~daemon.paper.ledger.ResumeRequest` to the ledger (one committed, fsynced
transaction; safe while a daemon is writing to the same ledger: SQLite WAL + busy timeout). A running
daemon picks it up with ``Ledger.poll_resumes()`` and calls ``RiskGate.resume(...)``; a daemon started
later sees it in ``Ledger.restore()`` (a trip followed by a resume is not restored as tripped).
``--run`` targets one run id; the default ``*`` applies to every run of the ledger.
When no targeted run has a tripped gate it says so in one line and writes nothing.
Exit status: 0 written or nothing to resume, 2 the ledger is missing, foreign or corrupt (one line
on stderr).
"""

from __future__ import annotations

import argparse
import sys

from daemon.paper.ledger import LedgerError, open_readonly, write_resume


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ledger", metavar="LEDGER", help="the SQLite ledger file")
    p.add_argument("--run", default="*", help="run id to resume (default: * = all runs)")
    p.add_argument("--reason", default="manual resume", help="free text stored with the request")


def _tripped_runs(path: str) -> list[str]:
    from daemon.paper.ledger import fold_rows

    conn = open_readonly(path)
    try:
        runs = [r[0] for r in conn.execute("SELECT run_id FROM sessions ORDER BY created_wall_ms, rowid")]
        out = []
        for rid in runs:
            rows = conn.execute(
                "SELECT seq, kind, body FROM journal WHERE (run_id = ? AND kind IN ('instrument','risk'))"
                " OR (kind = 'resume' AND run_id IN (?, '*')) ORDER BY seq",
                (rid, rid),
            )
            if fold_rows(rid, rows).risk_tripped:
                out.append(rid)
        return out
    finally:
        conn.close()


def run(args: argparse.Namespace) -> int:
    try:
        tripped = _tripped_runs(args.ledger)
        if not (tripped if args.run == "*" else args.run in tripped):
            what = (f"no run in {args.ledger} has a tripped risk gate" if args.run == "*"
                    else f"run {args.run} in {args.ledger} has no tripped risk gate")
            print(f"mmd resume: nothing to resume: {what} (nothing written)")
            return 0
        req = write_resume(args.ledger, args.run, args.reason)
    except LedgerError as e:
        print(f"mmd resume: {e}", file=sys.stderr)
        return 2
    was = ", ".join(tripped) if tripped else "none"
    print(f"mmd resume: wrote {req.resume_id} for run {req.run_id} (tripped before: {was})")
    return 0
