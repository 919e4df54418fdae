"""Settings from ``TREND_*`` environment variables, validated once at start-up.

Nothing here reads the environment at import time: call :func:`load_settings`.
A bad value raises :class:`~trend.errors.ConfigError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cache
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trend.errors import ConfigError
from trend.keys import Normalization
from trend.model import DAY_MS, HOUR_MS, LEVELS, MINUTE_MS, RAW_RETENTION, Hierarchy, job_defaults

ENV_PREFIX = "TREND_"
_UNITS = {"ms": 1, "s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(text: object) -> int:
    """``'6d'`` → milliseconds. Integers are taken as milliseconds already."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"expected a duration such as 90s, 15m, 6h, 7d or 2w, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


DurationMs = Annotated[int, BeforeValidator(parse_duration), Field(gt=0)]


class JobSettings(BaseModel):
    """One scheduled job: on/off and the cron fields the seed's options used."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    second: str = "0"
    minute: str = "*"
    hour: str = "*"

    @field_validator("second", "minute", "hour")
    @classmethod
    def _cron_field_parses(cls, value: str, info: ValidationInfo) -> str:
        # "*", "*/5" and a number in range, the defaults' forms, need no parser: a process that only
        # reads (the CLI) then never loads APScheduler. Anything else is parsed as the worker would.
        top = 23 if info.field_name == "hour" else 59
        step = value.removeprefix("*/")
        if value == "*" or (step.isascii() and step.isdigit() and
                            (0 < int(step) <= top if value.startswith("*/") else int(step) <= top)):
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger(**{str(info.field_name): value}, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid cron {info.field_name} field ({exc})") from None
        return value


def _jobs_with_defaults(value: object, levels: Hierarchy) -> dict[str, Any]:
    """Each job's own cron fields, overridden field by field: ``TREND_JOBS__AGG_5M__MINUTE`` keeps its second."""
    given = value if isinstance(value, dict) else {}
    defaults = job_defaults(levels)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown job {unknown[0]!r}; jobs: {', '.join(defaults)}")
    result: dict[str, Any] = {}
    for job, cron in defaults.items():
        fields = given.get(job, {})
        fields = fields.model_dump() if isinstance(fields, JobSettings) else dict(fields)
        result[job] = {"second": cron.second, "minute": cron.minute, "hour": cron.hour, **fields}
    return result


def _retention_with_defaults(value: object, levels: Hierarchy) -> dict[str, Any]:
    """``raw`` and one entry per level, each defaulting to the level's own retention."""
    given = value if isinstance(value, dict) else {}
    defaults: dict[str, Any] = {"raw": RAW_RETENTION, **{level.name: level.retention for level in levels}}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown retention {unknown[0]!r}; expected one of {', '.join(defaults)}")
    return {**defaults, **given}


def parse_allowed(entry: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]:
    """A TREND_ALERT_WEBHOOK_ALLOW entry: ``10.0.0.0/8``, ``127.0.0.1:9000``, ``fd00::/8`` or
    ``[::1]:9000`` → (network, port or None). A ValueError says what is wrong."""
    text, port = entry.strip(), None
    if text.startswith("["):
        text, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{entry!r}: expected [IPv6]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:  # IPv4, or an IPv4 network, with a port
        text, _, digits = text.partition(":")
        if not digits.isdigit():
            raise ValueError(f"{entry!r}: the port must be a number")
        port = int(digits)
    if port is not None and not 1 <= port <= 65_535:
        raise ValueError(f"{entry!r}: the port must be from 1 to 65535")
    return ipaddress.ip_network(text, strict=False), port


def _comma_list(value: object) -> object:
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    database_url: str = "sqlite:///trend.db"
    api_key: SecretStr | None = None
    read_key: SecretStr | None = None
    timezone: str = "UTC"
    worker_enabled: bool = True
    worker_threads: int = Field(default=2, ge=1, le=64)
    misfire_grace_seconds: int = Field(default=30, ge=1, le=3600)
    # After each bucket a run pauses this many times the bucket's own duration, leaving CPU to the app.
    worker_yield_ratio: float = Field(default=1.0, ge=0.0, le=10.0)
    # Keyed by job id (agg_<level>, retention): TREND_JOBS__AGG_5M__MINUTE='*/10'.
    jobs: dict[str, JobSettings] = Field(default_factory=dict, validate_default=True)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_prefix: str = "[트렌드]"
    # seed: the line format the seed logged (docs/architecture.md); json: one JSON object a line, for log shippers.
    log_format: Literal["seed", "json"] = "seed"
    accepted_lateness: DurationMs = 6 * DAY_MS
    # Keyed by raw and level name: TREND_RETENTION__5M=90d.
    retention: dict[str, DurationMs] = Field(default_factory=dict, validate_default=True)
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0, le=600_000)
    # How keys and segments are made one per thing at ingest and in queries (trend/keys.py).
    key_normalization: Normalization = "nfkc_casefold"
    # auto: distributed tables when the database has the citus extension; on: insist; off: plain PostgreSQL.
    citus: Literal["auto", "on", "off"] = "auto"
    # PostgreSQL's users sketches. auto: postgresql-hll where the server has it, else DataSketches in
    # trend's process; on: insist on postgresql-hll; off: always in trend's process.
    hll: Literal["auto", "on", "off"] = "auto"
    # Citus: the longest a writer or a run waits at the commit barrier before giving up (a retry).
    citus_barrier_timeout: DurationMs = 5_000
    # PostgreSQL: server-side prepared statements (psycopg's); off behind a pooler in transaction mode,
    # such as pgbouncer's pool_mode=transaction, where a connection's statements are not its own.
    postgres_prepared_statements: bool = True
    # Webhook receivers on addresses that are not public are refused unless listed here: comma-separated
    # addresses or networks, each with a port or not, e.g. 127.0.0.1:9000,10.0.0.0/8. Read by the
    # process that delivers (trend serve or trend worker), when it sends.
    alert_webhook_allow: Annotated[list[str], NoDecode, BeforeValidator(_comma_list)] = Field(default_factory=list)
    alert_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    alert_max_attempts: int = Field(default=8, ge=1, le=50)
    alert_retry_base: DurationMs = 30_000  # the first retry's wait; each next one doubles, up to 1h
    # Identical reads within this long of each other share one answer (docs/queries.md, "Shared answers").
    read_share_ms: int = Field(default=500, ge=0, le=10_000)
    # A server's start-up reads each event type's top list for at most this long, so its first users'
    # reads cost what the next ones do (docs/queries.md, "A new process's first read"); 0: none.
    warm_up_seconds: float = Field(default=1.0, ge=0, le=60)
    # Cache-Control: max-age of GET /v1/top, /v1/rising and /v1/series, so a CDN or proxy may absorb reads.
    http_max_age: int = Field(default=0, ge=0, le=86_400)
    # The address `trend serve` binds (--host). Without TREND_API_KEY, only Host headers naming it,
    # localhost, 127.0.0.1 or [::1], or one of TREND_ALLOWED_HOSTS, are served (trend/api/keyless.py).
    host: str | None = None
    allowed_hosts: Annotated[list[str], NoDecode, BeforeValidator(_comma_list)] = Field(default_factory=list)
    # Serve beyond loopback without TREND_API_KEY, e.g. behind a proxy that authenticates.
    allow_keyless: bool = False
    # Pages of these origins (https://shop.example, or *) may call the API from the browser (CORS).
    # Empty, the default: none may; `trend serve` only (an app that embeds trend sets its own CORS).
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(_comma_list)] = Field(default_factory=list)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1)
    # Overload (trend/api/admission.py, docs/operations.md): classes of work with their own capacity.
    admission: bool = True
    read_concurrency: int = Field(default_factory=lambda: max(2, os.cpu_count() or 2), ge=1, le=256)
    read_concurrency_per_client: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2),
                                             ge=1, le=256)
    read_queue_per_client: int = Field(default=8, ge=0, le=10_000)
    read_queue: int = Field(default=64, ge=0, le=100_000)
    read_queue_wait_ms: int = Field(default=2_000, ge=0, le=60_000)
    rate_reads: float = Field(default=5_000.0, gt=0, le=1e6)  # a second, per client; bursts of twice that
    rate_writes: float = Field(default=5_000.0, gt=0, le=1e6)

    # The level hierarchy the jobs and retentions are of: LEVELS, or a Trend's own (settings_for).
    hierarchy: ClassVar[Hierarchy] = LEVELS

    @field_validator("jobs", mode="before")
    @classmethod
    def _jobs(cls, value: object) -> dict[str, Any]:
        return _jobs_with_defaults(value, cls.hierarchy)

    @field_validator("retention", mode="before")
    @classmethod
    def _retentions(cls, value: object) -> dict[str, Any]:
        return _retention_with_defaults(value, cls.hierarchy)

    @field_validator("api_key", "read_key")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty key would match an empty bearer token: set but blank is a mistake, never "open".
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is set but empty; give it a value, or unset it")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from trend.storage.dialects import for_url  # the backends: only once a URL is checked

        for_url(value)  # a ValueError lists the URLs the backends take
        return value

    @field_validator("alert_webhook_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_allowed(entry)  # a ValueError names the entry
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "*" in entry[1:] or (entry.startswith("*") and entry != "*" and not entry.startswith("*.")):
                raise ValueError(f"{entry!r}: a wildcard must be * or lead, as in *.example.com")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for entry in value:
            parts = urlsplit(entry)
            exact = parts.scheme in ("http", "https") and parts.netloc and f"{parts.scheme}://{parts.netloc}" == entry
            if entry != "*" and not exact:
                raise ValueError(f"{entry!r}: an origin is scheme://host[:port] with no path, e.g. "
                                 "https://shop.example, or *")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}, e.g. UTC or Asia/Seoul") from None
        return value

    @model_validator(mode="after")
    def _retention_covers_lateness(self) -> Settings:
        # A late event recomputes its minute from raw events, and its parents from 1m and 5m rows:
        # those sources must still exist, with an hour to spare for the 1h bucket around it.
        needed = self.accepted_lateness + HOUR_MS
        sources = ["raw", *(level.name for level in self.hierarchy.levels[:-1])]
        for name in sources:
            if self.retention[name] < needed:
                raise ValueError(
                    f"{ENV_PREFIX}RETENTION__{name.upper()} must be at least {ENV_PREFIX}ACCEPTED_LATENESS plus 1h"
                )
        return self

    def job(self, job_id: str) -> JobSettings:
        return self.jobs[job_id]

    def retention_ms(self, name: str) -> int:
        """How long ``raw`` or a level is kept."""
        return self.retention[name]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def __repr_args__(self) -> Any:
        # A database URL may carry a password: never let it reach a log through repr().
        for name, value in super().__repr_args__():
            yield name, (_hide_password(value) if name == "database_url" else value)


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


@cache
def settings_for(levels: Hierarchy) -> type[Settings]:
    """The settings of a hierarchy: a job and a retention for each of its levels, named by it
    (``TREND_JOBS__AGG_1D__HOUR``, ``TREND_RETENTION__1D``)."""
    if levels == LEVELS:
        return Settings
    return type("Settings", (Settings,), {"hierarchy": levels, "__module__": __name__})


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; overrides win over the environment."""
    return load_settings_of(LEVELS, **overrides)


def load_settings_of(levels: Hierarchy, **overrides: Any) -> Settings:
    """:func:`load_settings` for a hierarchy of levels of its own."""
    try:
        return settings_for(levels)(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:
            raise ConfigError(message.split(" ", 1)[0], message) from None
        raise ConfigError(_env_name(first["loc"]), message) from None
