"""Configuration: a TOML file plus ``MMD_*`` environment overrides, validated by pydantic.

Precedence (highest first): ``MMD_*`` environment variables, the ``--config`` TOML file, the
defaults below (which equal ``config/default.toml``: Bybit mainnet public endpoints, category
``linear``, ``[BTCUSDT]``, depth 50, paper mode). Nested keys use ``__`` in the environment:
``MMD_QUOTER__GAMMA=0.2`` sets ``[quoter] gamma``; a list is a comma list or JSON
(``MMD_MARKET__SYMBOLS=BTCUSDT,ETHUSDT`` or ``MMD_MARKET__SYMBOLS='["BTCUSDT","ETHUSDT"]'``).

A bad value, from the file or the environment, raises :class:`ConfigError` whose message is one
line naming the key, the value and what is allowed; the CLI prints it and exits with status 2.

Each section is its own model; the module that uses a section documents the units of its fields.
The features and models never see these classes: :mod:`daemon.wiring` maps the sections to their
own plain parameter types.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict,
                               SettingsError)


class ConfigError(ValueError):
    """A configuration problem, one line: key, value, what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MarketConfig(_Section):
    """Where market data comes from and what to subscribe."""

    rest_url: str = "https://api.bybit.com"
    ws_url: str = "wss://stream.bybit.com/v5/public/linear"
    category: Literal["linear", "inverse", "spot"] = "linear"
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1)
    depth: Literal[1, 50, 200, 1000] = 50
    #: public topics per symbol besides the order book (``kline`` uses ``kline_interval``).
    topics: list[Literal["publicTrade", "tickers", "kline", "orderbook.1"]] = Field(
        default_factory=lambda: ["publicTrade", "tickers", "kline"]
    )
    kline_interval: Literal["1", "3", "5", "15", "30", "60"] = "1"
    kline_history: int = Field(200, ge=0, le=1000)

    @field_validator("rest_url", "ws_url")
    @classmethod
    def _url(cls, v: str, info: ValidationInfo) -> str:
        schemes = ("http", "https") if info.field_name == "rest_url" else ("ws", "wss")
        try:
            u = urlsplit(v)
            ok = u.scheme in schemes and bool(u.hostname) and (u.port is None or u.port > 0)
        except ValueError:  # e.g. a port that is not a number or out of range
            ok = False
        if not ok:
            raise ValueError(f"must be a URL with a host starting with {' or '.join(x + '://' for x in schemes)}")
        return v

    @field_validator("symbols")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        for s in v:
            if not s or not s.isalnum() or s.upper() != s:
                raise ValueError(f"symbol {s!r} must be upper-case letters/digits like BTCUSDT")
        if len(set(v)) != len(v):
            raise ValueError("symbols must be unique")
        return v


class RestConfig(_Section):
    """REST client limits (seconds)."""

    timeout_s: float = Field(10.0, gt=0, le=120)
    max_retries: int = Field(5, ge=0, le=20)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    #: pause after HTTP 403 (IP ban: Bybit asks for at least 10 minutes)
    ban_backoff_s: float = Field(600.0, ge=0)
    #: start-up retries an unreachable REST endpoint forever; the wait between tries doubles from
    #: backoff_base_s up to this cap (full jitter in the upper half)
    startup_retry_max_s: float = Field(60.0, gt=0)


class WsConfig(_Section):
    """Websocket client limits (seconds, bytes)."""

    ping_interval_s: float = Field(20.0, gt=0)
    pong_timeout_s: float = Field(10.0, gt=0)
    #: no frame at all for this long -> reconnect
    silence_s: float = Field(30.0, gt=0)
    subscribe_timeout_s: float = Field(10.0, gt=0)
    reconnect_base_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    max_frame_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    args_per_request: int = Field(10, ge=1, le=10)
    #: a LIVE book with no update (exchange time) for this long is invalidated (ms)
    book_stale_ms: int = Field(30_000, ge=100)


class QuoterConfig(_Section):
    """The quoting policy. gamma: risk aversion per (price unit x order-size unit); horizon in seconds.

    Units matter: the A-S paper's gamma = 0.1 is for a $100 stock with sigma = 2 $/sqrt(day-unit).
    For BTCUSDT (sigma ~ 5-8 USDT/sqrt(s), horizon 300 s) the inventory term gamma*sigma^2*(T-t) is
    ~1800*gamma USDT, so gamma = 0.1 would quote ~180 USDT wide. The default 0.001 gives ~2 USDT of
    inventory skew per order-size unit held and spreads dominated by (2/gamma)ln(1+gamma/kappa).
    """

    kind: Literal["avellaneda", "glft", "rl"] = "avellaneda"
    gamma: float = Field(0.001, gt=0)
    horizon_s: float = Field(300.0, gt=0)
    horizon_mode: Literal["rolling", "session"] = "rolling"
    #: order size in base units (BTC); q fed to the quoter is position / order_size
    order_size: float = Field(0.001, gt=0)
    min_spread_ticks: int = Field(1, ge=1)
    #: minimum milliseconds between requotes of an unchanged decision (0 = every tick)
    min_requote_ms: int = Field(0, ge=0)
    rl_policy: str | None = None
    spread_model: Literal["formula", "nn"] = "formula"
    spread_model_path: str | None = None


class FeaturesConfig(_Section):
    """Feature windows (seconds, levels, buckets)."""

    top_k: int = Field(5, ge=1, le=1000)
    ofi_window_s: float = Field(10.0, gt=0)
    trade_window_s: float = Field(60.0, gt=0)
    vol_sample_s: float = Field(1.0, gt=0)
    vol_window: int = Field(300, ge=2)
    vol_ewma_halflife_s: float = Field(60.0, gt=0)
    vpin_bucket_volume: float = Field(5.0, ge=0, description="base units per bucket; 0 = derive")
    vpin_buckets: int = Field(50, ge=2)
    #: VPIN time-bar length (s) for bulk volume classification (ELO use 60 s; 1 s suits minutes of data)
    vpin_bar_s: float = Field(1.0, gt=0)
    #: number of recent bar price changes in the BVC sigma_dP estimate
    vpin_sigma_bars: int = Field(300, ge=2)
    #: with vpin_bucket_volume = 0: seconds of volume used to derive the bucket (volume / vpin_buckets)
    vpin_derive_s: float = Field(60.0, gt=0)
    spread_window: int = Field(600, ge=2)
    #: closed candles averaged by the Garman-Klass estimator
    gk_window: int = Field(30, ge=1)

    @field_validator("ofi_window_s", "trade_window_s", "vol_sample_s", "vpin_bar_s", "vpin_derive_s")
    @classmethod
    def _whole_ms(cls, v: float) -> float:
        if abs(v * 1000 - round(v * 1000)) > 1e-6:
            raise ValueError(f"{v} s is not a whole number of milliseconds")
        return v


class CalibrationConfig(_Section):
    """Online sigma / A / kappa calibration and the fallbacks used while data is thin."""

    window_s: float = Field(300.0, gt=0)
    min_trades: int = Field(50, ge=1)
    sigma_fallback: float = Field(5.0, gt=0, description="price/sqrt(s)")
    A_fallback: float = Field(1.0, gt=0, description="per second")
    kappa_fallback: float = Field(0.5, gt=0, description="per price unit")
    A_bounds: tuple[float, float] = (1e-4, 1e4)
    kappa_bounds: tuple[float, float] = (1e-4, 1e3)
    sigma_bounds: tuple[float, float] = (1e-6, 1e6)
    #: depth grid of the arrival-rate fit: bucket width in ticks and the deepest threshold (ticks)
    bucket_ticks: int = Field(1, ge=1)
    max_depth_ticks: int = Field(200, ge=2, le=100_000)
    #: a depth threshold enters the fit only if at least this many window trades reached it
    min_bucket_trades: int = Field(5, ge=1)
    min_points: int = Field(3, ge=2)
    min_r2: float = Field(0.5, ge=0, le=1)
    #: memory cap on the trade window (oldest dropped first; the rate span shrinks accordingly)
    max_trades: int = Field(200_000, ge=10)
    #: refit A/kappa at most this often (seconds of event time) from on_timer
    refit_interval_s: float = Field(1.0, ge=0)
    #: "counts": weight each depth's log-rate by its trade count (var ln N ~ 1/N); "none": plain OLS
    #: exactly as the hftbacktest tutorial (the noisy deep depths then dominate)
    fit_weighting: Literal["counts", "none"] = "counts"
    #: fold consecutive prints with the same timestamp and taker side (one order sweeping the book)
    #: into one arrival at the deepest depth reached
    merge_sweeps: bool = True


class InventoryConfig(_Section):
    """Position limits (base units and quote notional)."""

    max_position: float = Field(0.05, gt=0)
    max_notional: float = Field(5000.0, gt=0)
    penalty: Literal["symmetric", "asymmetric"] = "symmetric"
    vol_scaling: float = Field(0.0, ge=0)
    #: reference sigma (price/sqrt(s)) for vol_scaling; None = the caller passes one (or no scaling)
    vol_ref: float | None = Field(None, gt=0)
    hedge_symbols: list[str] = Field(default_factory=list)
    #: symbol whose returns the hedge betas regress on; None = first of hedge_symbols
    hedge_reference: str | None = None
    #: rolling OLS window (number of synchronous mid samples)
    hedge_window: int = Field(300, ge=3)


class AdverseConfig(_Section):
    """Adverse-selection gate: model file, threshold, what to do above it."""

    model_path: str | None = None
    #: p_adverse above which a side is widened/pulled; None = the model file's own threshold
    threshold: float | None = Field(None, ge=0, le=1)
    action: Literal["widen", "pull"] = "widen"
    widen_factor: float = Field(2.0, ge=1)
    label_ticks: int = Field(2, ge=1)
    label_horizon_s: float = Field(5.0, gt=0)


class VenueConfig(_Section):
    """Paper venue: latencies in ms, fee rates as fractions (0.0002 = 2 bp)."""

    entry_latency_ms: int = Field(20, ge=0)
    cancel_latency_ms: int = Field(20, ge=0)
    maker_fee: float = Field(0.0002, ge=-0.01, le=0.01)
    queue_model: Literal["conservative", "prob_linear", "prob_power"] = "prob_power"
    queue_power: float = Field(2.0, gt=0)
    #: feed latency between the exchange stamping an event and the quote decided on it (ms):
    #: ``zero`` (act at exchange time: replay/backtest default), ``constant`` (feed_latency_ms),
    #: ``recorded`` (each event's recv - ts less the estimated clock offset, plus feed_latency_ms)
    feed_latency: Literal["zero", "constant", "recorded"] = "zero"
    feed_latency_ms: int = Field(0, ge=0)


class LedgerConfig(_Section):
    """Durable journal: SQLite path, batching."""

    path: str = "mmd-ledger.sqlite"
    #: the position book a live daemon continues across restarts (one ledger can hold several)
    run_id: str = Field("live", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    batch_max: int = Field(512, ge=1)
    flush_interval_ms: int = Field(50, ge=1)
    mark_interval_ms: int = Field(1000, ge=1)


class RiskConfig(_Section):
    """Risk gate limits (base units, quote currency, ms)."""

    max_position: float = Field(0.1, gt=0)
    max_notional: float = Field(10_000.0, gt=0)
    max_total_notional: float = Field(20_000.0, gt=0)
    max_drawdown: float = Field(500.0, gt=0)
    max_daily_loss: float = Field(300.0, gt=0)
    max_error_rate: float = Field(5.0, gt=0, description="parse errors per second")
    stale_ms: int = Field(5000, ge=1)
    cooldown_s: float | None = Field(None, ge=0, description="None = manual resume only")
    error_window_s: float = Field(10.0, gt=0, description="window of the parse-error rate (s)")


class OpsConfig(_Section):
    """Logs, metrics, health."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    audit_every_n: int = Field(0, ge=0, description="log one quote audit record every N decisions (0 = off)")
    status_interval_s: float = Field(10.0, gt=0)
    #: event-loop lag sampling period (seconds) of the monitor shared by /healthz and the watchdog
    loop_lag_interval_s: float = Field(0.25, gt=0, le=60)
    #: /healthz answers 503 when the measured event-loop lag exceeds this (seconds)
    max_loop_lag_s: float = Field(5.0, gt=0)


class Settings(BaseSettings):
    """The whole configuration. ``mode`` is ``paper`` only: mmd never sends real orders."""

    model_config = SettingsConfigDict(
        env_prefix="MMD_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    mode: Literal["paper"] = "paper"
    market: MarketConfig = Field(default_factory=MarketConfig)
    rest: RestConfig = Field(default_factory=RestConfig)
    ws: WsConfig = Field(default_factory=WsConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    quoter: QuoterConfig = Field(default_factory=QuoterConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    adverse: AdverseConfig = Field(default_factory=AdverseConfig)
    venue: VenueConfig = Field(default_factory=VenueConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.quoter.kind == "rl" and not self.quoter.rl_policy:
            raise ValueError("quoter.kind = 'rl' needs quoter.rl_policy (a policy file from mmd train-rl)")
        if self.quoter.spread_model == "nn" and (self.quoter.kind != "avellaneda" or not self.quoter.spread_model_path):
            raise ValueError("quoter.spread_model = 'nn' needs quoter.kind = 'avellaneda' and quoter.spread_model_path "
                             "(a model file from mmd train-spread)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env beats the file (passed as init kwargs); no dotenv / secrets dirs.
        return (_EnvSource(settings_cls), init_settings)

    def config_hash(self) -> str:
        """Short stable hash of the effective config (logged on every line as ``config_hash``)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


class _EnvValueError(ValueError):
    """An ``MMD_*`` value that does not parse; the message is the one line :class:`ConfigError` shows."""


class _EnvSource(EnvSettingsSource):
    """``MMD_*`` variables, where a list (or a pair such as ``calibration.A_bounds``) may also be a
    comma list: ``MMD_MARKET__SYMBOLS=BTCUSDT,ETHUSDT``. Anything else that must be JSON and is not
    raises :class:`_EnvValueError` naming the key."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            is_sequence = typing.get_origin(field.annotation) in (list, tuple)
            if is_sequence and not value.lstrip().startswith("["):
                return [x.strip() for x in value.split(",") if x.strip()]
            shown = json.dumps(value) if len(value) <= 80 else json.dumps(value[:77]) + "..."
            what = "a comma list or a JSON list" if is_sequence else "a JSON object"
            raise _EnvValueError(f"config key {_dotted_key(field_name, field)} = {shown}: "
                                 f"not {what} (environment variable)") from None


def _dotted_key(name: str, field: FieldInfo) -> str:
    """``section.key`` of the field object ``field`` (just ``name`` for a whole section)."""
    for section, sf in Settings.model_fields.items():
        model = sf.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            for key, f in model.model_fields.items():
                if f is field:
                    return f"{section}.{key}"
    return name


def load_settings(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load the TOML file at ``path`` (optional), apply ``MMD_*`` env vars and ``overrides``
    (a nested dict, highest precedence after env), validate. Raises :class:`ConfigError`."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(p)!r}: not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r}: invalid TOML: {e}") from None
        except OSError as e:
            raise ConfigError(f"config file {str(p)!r}: {e.strerror}") from None
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as e:
        raise ConfigError(_one_line(e)) from None
    except SettingsError as e:
        cause = e.__cause__
        msg = str(cause) if isinstance(cause, _EnvValueError) else f"environment: {e}"
        raise ConfigError(" ".join(msg.split())) from None


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _one_line(e: ValidationError) -> str:
    errs = e.errors()
    first = errs[0]
    key = ".".join(str(x) for x in first.get("loc", ())) or "<root>"
    value = first.get("input")
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    ctx = first.get("ctx") or {}
    if first.get("type") == "literal_error" and "expected" in ctx:
        msg = f"allowed: {ctx['expected']}"
    elif first.get("type") == "extra_forbidden":
        msg = "unknown key"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    shown = json.dumps(value, default=str) if not isinstance(value, dict) else "{...}"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"config key {key} = {shown}: {msg}{more}"
