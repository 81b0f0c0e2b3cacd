"""Instrument rules and exact decimal-string <-> integer tick/lot conversion.

Bybit sends prices and sizes as decimal strings (``"61800.20"``, ``"0.557"``). The core never keys
anything by binary floats: a price is an ``int`` count of the instrument's ``tickSize`` ("ticks"), a
size an ``int`` count of its ``qtyStep`` ("lots"). Conversion is exact; a string that is not on the
grid raises :class:`OffGridError` (a ``ValueError``) instead of being rounded silently.

Conversion is on the hot path, so each :class:`Instrument` keeps a small bounded cache from string to
int: book prices repeat constantly, and a dict hit is much cheaper than parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

_POW10 = [10**i for i in range(19)]
_CACHE_LIMIT = 1 << 16
#: grid counts (ticks, lots) must stay below this: the C book holds them as int64
VALUE_LIMIT = 1 << 62


class OffGridError(ValueError):
    """A decimal string that is not a whole multiple of the instrument's grid step."""


def decimals_of(step: str) -> int:
    """Number of decimal places needed to write ``step`` exactly (``"0.10"`` -> 1, ``"5"`` -> 0)."""
    d = Decimal(step).normalize()
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


class Grid:
    """An exact grid ``step`` (e.g. tick size ``"0.1"``): str <-> int multiples of ``step``.

    ``to_int("61800.20")`` with step ``"0.1"`` is ``618002``. ``to_float(618002)`` is ``61800.2``.
    """

    __slots__ = ("step", "decimals", "units", "_cache", "step_float", "display_decimals")

    def __init__(self, step: str) -> None:
        try:
            d = Decimal(step)
        except InvalidOperation as exc:
            raise ValueError(f"grid step {step!r} is not a decimal") from exc
        if not d.is_finite() or d <= 0:
            raise ValueError(f"grid step {step!r} must be a positive decimal")
        self.step = str(d.normalize())
        self.decimals = decimals_of(step)
        self.units = int(d.scaleb(self.decimals))  # step in units of 10**-decimals
        self.step_float = float(d)
        # Bybit writes values with the step's own trailing zeros (tick "0.10" -> "61800.20").
        self.display_decimals = max(self.decimals, len(step.partition(".")[2]))
        self._cache: dict[str, int] = {}

    def to_int(self, s: str) -> int:
        """Exact grid count of decimal string ``s``; raises :class:`OffGridError` / ``ValueError``."""
        v = self._cache.get(s)
        if v is not None:
            return v
        v = self._parse(s)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[s] = v
        return v

    def _parse(self, s: str) -> int:
        # Fast path: exactly the grid's decimals ("2.507" for step 0.001), ASCII digits only.
        dec = self.decimals
        i = s.find(".")
        if i > 0 and len(s) - i - 1 == dec:
            t = s[:i] + s[i + 1 :]
            if t.isdigit() and t.isascii():
                q, r = divmod(int(t), self.units)
                if not r and q < VALUE_LIMIT:
                    return q
        return self._parse_slow(s)

    def _parse_slow(self, s: str) -> int:
        if s[:1] in "+- " or s[-1:] in " \t\n" or "_" in s:
            # int() accepts signs and whitespace; Bybit never sends them for prices/sizes.
            raise ValueError(f"{s!r} is not an unsigned decimal")
        dec = self.decimals
        i = s.find(".")
        if i < 0:
            scaled = int(s) * _POW10[dec]
        else:
            frac = s[i + 1 :]
            n = len(frac)
            if n <= dec:
                scaled = int(s[:i] + frac) * _POW10[dec - n]
            else:
                extra = frac[dec:]
                if extra.strip("0"):
                    raise OffGridError(f"{s!r} has more decimals than step {self.step}")
                scaled = int(s[:i] + frac[:dec])
        q, r = divmod(scaled, self.units)
        if r:
            raise OffGridError(f"{s!r} is not a multiple of step {self.step}")
        if q >= VALUE_LIMIT:
            raise ValueError(f"{s!r} is out of range (>= 2**62 steps of {self.step})")
        return q

    def to_str(self, n: int) -> str:
        """Decimal string of ``n`` grid steps, written with the step string's decimals
        (``"0.10"`` -> two decimals, as Bybit writes prices)."""
        dd = self.display_decimals
        scaled = n * self.units * _POW10[dd - self.decimals]
        if dd == 0:
            return str(scaled)
        sign = "-" if scaled < 0 else ""
        ip, fp = divmod(abs(scaled), _POW10[dd])
        return f"{sign}{ip}.{fp:0{dd}d}"

    def to_float(self, n: int) -> float:
        """Grid count -> float value (for features and models only, never for keys)."""
        return n * self.units / _POW10[self.decimals]

    def from_float_floor(self, x: float) -> int:
        """Largest grid count whose value is <= x (use for bids)."""
        import math

        return math.floor(x / self.step_float + 1e-9)

    def from_float_ceil(self, x: float) -> int:
        """Smallest grid count whose value is >= x (use for asks)."""
        import math

        return math.ceil(x / self.step_float - 1e-9)


@dataclass(frozen=True)
class Instrument:
    """Trading rules of one symbol, from ``/v5/market/instruments-info``.

    Prices are in ticks of ``tick_size``, sizes in lots of ``qty_step``. ``min_qty`` is in lots,
    ``min_notional`` in quote currency (USDT for linear).
    """

    symbol: str
    category: str
    tick_size: str
    qty_step: str
    min_qty_lots: int = 1
    max_qty_lots: int = 10**12
    min_notional: float = 0.0
    funding_interval_min: int = 480
    contract_type: str = "LinearPerpetual"
    status: str = "Trading"
    price: Grid = field(init=False, repr=False, compare=False)
    qty: Grid = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", Grid(self.tick_size))
        object.__setattr__(self, "qty", Grid(self.qty_step))

    @classmethod
    def from_bybit(cls, category: str, row: dict[str, Any]) -> "Instrument":
        """Build from one ``result.list[]`` row of instruments-info (linear/inverse/spot shapes)."""
        pf = row.get("priceFilter") or {}
        lf = row.get("lotSizeFilter") or {}
        tick = pf.get("tickSize")
        step = lf.get("qtyStep") or lf.get("basePrecision")
        if not tick or not step:
            raise ValueError(f"instrument {row.get('symbol')!r} lacks tickSize/qtyStep")
        qgrid = Grid(step)
        min_qty = lf.get("minOrderQty") or step
        max_qty = lf.get("maxOrderQty") or lf.get("maxLimitOrderQty")
        min_notional = lf.get("minNotionalValue") or lf.get("minOrderAmt") or "0"
        return cls(
            symbol=row["symbol"],
            category=category,
            tick_size=tick,
            qty_step=step,
            min_qty_lots=max(1, _ceil_lots(qgrid, min_qty)),
            max_qty_lots=_ceil_lots(qgrid, max_qty) if max_qty else 10**12,
            min_notional=float(min_notional),
            funding_interval_min=int(row.get("fundingInterval") or 0) or 480,
            contract_type=row.get("contractType", "") or "",
            status=row.get("status", "Trading") or "Trading",
        )


def _ceil_lots(grid: Grid, s: str) -> int:
    d = Decimal(s) / Decimal(grid.step)
    return int(d.to_integral_value(rounding="ROUND_CEILING"))


def btcusdt_linear() -> Instrument:
    """The real BTCUSDT linear perpetual's filters (tick 0.10, qty step 0.001, min 0.001, 5 USDT)."""
    return Instrument(
        symbol="BTCUSDT",
        category="linear",
        tick_size="0.10",
        qty_step="0.001",
        min_qty_lots=1,
        max_qty_lots=1_190_000,
        min_notional=5.0,
        funding_interval_min=480,
    )
