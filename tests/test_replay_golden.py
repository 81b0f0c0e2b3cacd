"""A pinned golden result (cryptofeed-style playback pin): ``mmd replay`` of the bundled BTCUSDT
recording with the default configuration journals exactly these records.

The other whole-system tests compare the code with itself (compiled vs plain, C vs Python, live vs
replay); this one compares it with a result reviewed by a person. It fails on *any* change of what
the daemon decides or books. When a change is meant to alter the journal (a new default, a venue
fix), rerun, review the new numbers in the summary, and update the pin in the same commit, saying
in the message why the journal changed.

History of the pin:
* ``ed43e1d4...``: 5,729 records, 70 fills, total PnL -1.3116 USDT (default config, 2026-12-08;
  unchanged by the execution-venue seam and the single owner of position).
"""

from __future__ import annotations

import sqlite3

import pytest

from daemon.config import load_settings
from daemon.paper.ledger import journal_digest
from daemon.recording import bundled_recording
from daemon.replay import replay

GOLDEN_DIGEST = "ed43e1d4c1f51ab33226a8a35d8407a9311f468d796eb3446ade8e44416a0531"
GOLDEN_RECORDS = 5729


def test_bundled_replay_matches_the_pinned_journal(tmp_path, monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("MMD_"):
            monkeypatch.delenv(k)
    led = tmp_path / "golden.sqlite"
    out = replay([bundled_recording()], load_settings(), ledger_path=str(led))
    s = out["symbols"]["BTCUSDT"]
    c = sqlite3.connect(str(led))
    (rid,) = c.execute("SELECT DISTINCT run_id FROM journal").fetchone()
    n = c.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    digest = journal_digest(c, rid)
    kinds = dict(c.execute("SELECT kind, COUNT(*) FROM journal GROUP BY kind").fetchall())
    c.close()
    summary = (n, s["fills"], s["quotes"], s["decisions"], round(s["pnl"]["total"], 4), kinds)
    assert (digest, n) == (GOLDEN_DIGEST, GOLDEN_RECORDS), f"the journal changed: review {summary}"
    assert s["fills"] == 70 and s["pnl"]["total"] == pytest.approx(-1.3115953200000279, abs=1e-9)
