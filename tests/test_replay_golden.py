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
* ``063571ed...``: 5,747 records, 84 fills, total PnL -1.5191 USDT (spread +0.3250, inventory
  -0.8074, fees 1.0368). The venue stopped flattering: an order the book moves through is
  executed without a print, due orders join the book they arrived at, a print is no longer
  counted again as a cancel, executable lots round like hftbacktest's. +14 fills, -0.21 USDT.
"""

from __future__ import annotations

import sqlite3

import pytest

from daemon.config import load_settings
from daemon.paper.ledger import journal_digest
from daemon.recording import bundled_recording
from daemon.replay import replay

GOLDEN_DIGEST = "063571edd84c316a94d76432091835dda80d92fc77b95c9df1ffd680164c9b7e"
GOLDEN_RECORDS = 5747


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
    assert s["fills"] == 84 and s["pnl"]["total"] == pytest.approx(-1.519139980000025, abs=1e-9)
