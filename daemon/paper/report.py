"""Summarise a paper ledger: what ``mmd report`` (:mod:`daemon.commands.report`) and ``mmd demo`` show.

:func:`build` reads the ledger read-only (it is validated first: a foreign or corrupt file raises
:class:`~daemon.paper.ledger.LedgerError` with one line), folds the chosen run's journal (default: the
most recently created run) and returns one row per symbol: fills, volume (base units and quote
currency), position (base units), PnL by component in quote currency (spread capture, inventory,
fees, funding, total), mean markouts at 1/5/30 s (price units, side-signed: positive = good for us)
and the maximum drawdown of the symbol's total PnL (quote currency). :func:`format_table` prints it.

:func:`render_png` draws a figure (matplotlib, Agg backend): mid and our quotes, inventory,
cumulative PnL by component and the markout distributions; :func:`render_html` makes a
self-contained page with the table and the figure embedded (base64 PNG). The series come from the
journalled marks (one per ``ledger.mark_interval_ms``) plus a point at every fill and funding payment.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field

from daemon.paper.inventory import Inventory
from daemon.paper.ledger import LedgerError, decode, open_readonly

HORIZONS = (1000, 5000, 30000)


@dataclass
class Series:
    """Time series of one symbol (ms, price units, base units, quote currency)."""

    ts: list = field(default_factory=list)
    mid: list = field(default_factory=list)
    bid: list = field(default_factory=list)
    ask: list = field(default_factory=list)
    position: list = field(default_factory=list)
    spread: list = field(default_factory=list)
    inventory: list = field(default_factory=list)
    fees: list = field(default_factory=list)
    funding: list = field(default_factory=list)
    total: list = field(default_factory=list)
    markouts: dict = field(default_factory=lambda: {h: [] for h in HORIZONS})


def _pick_run(conn, run_id: str | None) -> tuple[str, str]:
    if run_id is not None:
        row = conn.execute("SELECT run_id, mode FROM sessions WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no run {run_id!r} in this ledger")
        return row[0], row[1]
    row = conn.execute("SELECT run_id, mode FROM sessions ORDER BY created_wall_ms DESC, rowid DESC LIMIT 1").fetchone()
    if row is None:
        raise LedgerError("the ledger has no runs yet")
    return row[0], row[1]


def build(path: str, run_id: str | None = None) -> tuple[dict, dict[str, Series]]:
    """Fold the run's journal. Returns (summary dict, per-symbol series)."""
    conn = open_readonly(path)
    try:
        rid, mode = _pick_run(conn, run_id)
        runs = [r[0] for r in conn.execute("SELECT run_id FROM sessions ORDER BY created_wall_ms, rowid")]
        rows = conn.execute("SELECT seq, kind, body FROM journal WHERE run_id = ? ORDER BY seq", (rid,)).fetchall()
    finally:
        conn.close()
    inv = Inventory({})
    series: dict[str, Series] = {}
    peak: dict[str, float] = {}
    maxdd: dict[str, float] = {}
    orders: dict[str, dict[str, int]] = {}
    risk: list[dict] = []
    last_quote: dict[str, tuple] = {}

    def point(sym: str, ts: int) -> None:
        s = series[sym]
        p = inv.pnl(sym)
        b = inv.books[sym]
        ins = inv.instruments[sym]
        s.ts.append(ts)
        s.mid.append(b.mid)
        bid, ask = last_quote.get(sym, (None, None))
        s.bid.append(ins.price.to_float(bid) if bid is not None else math.nan)
        s.ask.append(ins.price.to_float(ask) if ask is not None else math.nan)
        s.position.append(ins.qty.to_float(p.position_lots))
        s.spread.append(p.spread)
        s.inventory.append(p.inventory)
        s.fees.append(p.fees)
        s.funding.append(p.funding)
        s.total.append(p.total)
        peak[sym] = max(peak.get(sym, 0.0), p.total)
        maxdd[sym] = max(maxdd.get(sym, 0.0), peak[sym] - p.total)

    for seq, kind, body in rows:
        rec = decode(kind, body, seq)
        if kind in ("fill", "funding", "mark", "markout", "order") and rec.symbol not in series:
            raise LedgerError(f"journal row {seq}: {kind} for {rec.symbol} before any instrument record of it")
        if kind == "instrument":
            inv.add_instrument(rec.instrument())
            series.setdefault(rec.symbol, Series())
            orders.setdefault(rec.symbol, {})
        elif kind == "fill":
            if inv.apply_fill(rec) is not None:
                point(rec.symbol, rec.ts_ms)
        elif kind == "funding":
            if inv.apply_funding(rec):
                point(rec.symbol, rec.ts_ms)
        elif kind == "mark":
            last_quote[rec.symbol] = (rec.bid_px, rec.ask_px)
            if rec.mid == rec.mid:
                inv.on_mid(rec.symbol, rec.ts_ms, rec.mid)
            point(rec.symbol, rec.ts_ms)
        elif kind == "markout":
            if rec.horizon_ms in series[rec.symbol].markouts:
                series[rec.symbol].markouts[rec.horizon_ms].append(rec.value)
        elif kind == "order":
            c = orders[rec.symbol]
            c[rec.kind] = c.get(rec.kind, 0) + 1
        elif kind == "risk":
            risk.append({"kind": rec.kind, "check": rec.check, "symbol": rec.symbol, "ts_ms": rec.ts_ms, "detail": rec.detail})

    symbols = {}
    tot = {"spread": 0.0, "inventory": 0.0, "fees": 0.0, "funding": 0.0, "total": 0.0}
    for sym in series:
        p = inv.pnl(sym)
        b = inv.books[sym]
        ins = inv.instruments[sym]
        mo = series[sym].markouts
        row = {
            "fills": b.n_fills,
            "volume": ins.qty.to_float(b.volume_lots),
            "volume_quote": b.volume_quote,
            "position": ins.qty.to_float(p.position_lots),
            "avg_entry": p.avg_entry,
            "pnl": {"spread": p.spread, "inventory": p.inventory, "fees": p.fees, "funding": p.funding, "total": p.total},
            "realized": p.realized,
            "unrealized": p.unrealized,
            "fees": p.fees,
            "markout_mean": {f"{h // 1000}s": (sum(mo[h]) / len(mo[h]) if mo[h] else None) for h in HORIZONS},
            "markout_n": {f"{h // 1000}s": len(mo[h]) for h in HORIZONS},
            "max_drawdown": maxdd.get(sym, 0.0),
            "orders": orders.get(sym, {}),
        }
        symbols[sym] = row
        for k in tot:
            tot[k] += row["pnl"][k]
    summary = {
        "ledger": path,
        "run_id": rid,
        "mode": mode,
        "runs": runs,
        "symbols": symbols,
        "total": tot,
        "risk_events": risk,
    }
    return summary, series


def fmt(x, nd=2) -> str:
    """``x`` with thousands separators and ``nd`` decimals; ``-`` for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{nd}f}"


COLUMNS = ["symbol", "fills", "volume", "position", "spread", "inventory", "fees", "funding", "total", "mo_1s", "mo_5s", "mo_30s", "max_dd"]


def table_rows(summary: dict) -> list[list[str]]:
    rows = []
    for sym, r in summary["symbols"].items():
        p = r["pnl"]
        m = r["markout_mean"]
        rows.append(
            [sym, str(r["fills"]), fmt(r["volume"], 4), fmt(r["position"], 4), fmt(p["spread"]), fmt(p["inventory"]), fmt(p["fees"]),
             fmt(p["funding"]), fmt(p["total"]), fmt(m["1s"], 3), fmt(m["5s"], 3), fmt(m["30s"], 3), fmt(r["max_drawdown"])]
        )
    return rows


def aligned(rows: list[list[str]]) -> list[str]:
    """``rows`` (the first one is the header) as text lines: the first column left-aligned, the
    others right-aligned, a dashed rule under the header."""
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * x for x in w))
    return lines


def format_table(summary: dict) -> str:
    lines = [f"run {summary['run_id']} ({summary['mode']})  ledger {summary['ledger']}"]
    lines += aligned([COLUMNS] + table_rows(summary))
    t = summary["total"]
    lines.append(
        f"total PnL {fmt(t['total'])} = spread {fmt(t['spread'])} + inventory {fmt(t['inventory'])} - fees {fmt(t['fees'])}"
        f" - funding {fmt(t['funding'])}  (quote currency; markouts in price units, side-signed)"
    )
    if summary["risk_events"]:
        lines.append(f"risk events: {len(summary['risk_events'])} (last: {summary['risk_events'][-1]['kind']} {summary['risk_events'][-1]['check']})")
    return "\n".join(lines)


def render_png(series: dict[str, Series], out) -> None:
    """Draw the four panels into ``out`` (a path or a binary file object)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(4, 1, figsize=(11, 13))
    for sym, s in series.items():
        t = [(x - s.ts[0]) / 1000.0 for x in s.ts] if s.ts else []
        ax[0].plot(t, s.mid, lw=1.0, label=f"{sym} mid")
        ax[0].plot(t, s.bid, lw=0.7, ls="--", label=f"{sym} our bid")
        ax[0].plot(t, s.ask, lw=0.7, ls="--", label=f"{sym} our ask")
        ax[1].step(t, s.position, where="post", label=sym)
        for comp in ("spread", "inventory", "fees", "funding", "total"):
            vals = getattr(s, comp)
            if comp in ("fees", "funding"):
                vals = [-v for v in vals]
                comp = f"-{comp}"
            ax[2].plot(t, vals, lw=1.4 if comp == "total" else 0.9, label=f"{sym} {comp}")
        for h, v in s.markouts.items():
            if v:
                ax[3].hist(v, bins=40, alpha=0.5, label=f"{sym} {h // 1000}s (n={len(v)})")
    ax[0].set_title("mid and our quotes (price)")
    ax[1].set_title("inventory (base units)")
    ax[2].set_title("cumulative PnL by component (quote currency)")
    ax[3].set_title("markout distribution (price units, + = good for us)")
    for a in ax[:3]:
        a.set_xlabel("seconds since first point")
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7, loc="best")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)


def render_html(summary: dict, series: dict[str, Series]) -> str:
    buf = io.BytesIO()
    render_png(series, buf)
    img = base64.b64encode(buf.getvalue()).decode()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in table_rows(summary))
    t = summary["total"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mmd report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>mmd paper report</h1><p>run <b>{html.escape(summary['run_id'])}</b> ({html.escape(summary['mode'])}),"
        f" ledger {html.escape(summary['ledger'])}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p>total PnL {fmt(t['total'])} = spread {fmt(t['spread'])} + inventory {fmt(t['inventory'])}"
        f" - fees {fmt(t['fees'])} - funding {fmt(t['funding'])} (quote currency)</p>"
        f"<img alt='mmd report charts' src='data:image/png;base64,{img}'/>"
        "</body></html>"
    )
