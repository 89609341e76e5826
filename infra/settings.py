"""The product's settings, all from `TICKETING_*` environment variables.

The libraries' own setting names (eventsourcing's PERSISTENCE_MODULE,
SQLALCHEMY_URL, ...) are derived here and nowhere else."""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def sqlalchemy_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use the psycopg 3 driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETING_", extra="ignore")

    data_dir: Path = Path("var")
    """Where the embedded nats-server keeps its store and SQLite keeps its files."""
    nats_url: str | None = None
    """An external NATS (with JetStream) to use instead of starting one."""
    database_url: str | None = None
    """The event store, idempotency records and read models (e.g. a PostgreSQL URL).
    Default: SQLite files in the data directory."""
    readmodel_url: str | None = None
    """Read models elsewhere than the event store (default: the database URL, or a
    SQLite file of their own so projections never wait on the command writer)."""
    cipher_key: str | None = None
    """AES key (base64 of 32 bytes) the event store is encrypted with. Default: the
    key in <data dir>/cipher.key, generated on the first run."""
    nats_credentials: Path | None = None
    """The product's own NATS credentials (an nkey seed file) for an external NATS; default: the
    key `serve` made in <data dir>/auth/system.nk."""
    nats_responder_credentials: Path | None = None
    """The product's responders' credentials (their own account) for an external NATS; default:
    <data dir>/auth/responder.nk."""
    nats_tls_ca: Path | None = None
    """A CA file to check a NATS that requires TLS."""
    nats_tls_cert: Path | None = None
    """A client certificate for a NATS that asks for one (with `nats_tls_key`)."""
    nats_tls_key: Path | None = None
    credentials: Path | None = None
    """The credentials the CLI's client commands use; default: the local operator's
    (<data dir>/auth/operator.nk, made by the first `serve`)."""
    nats_max_file_store: str | None = None
    """The most disk the embedded server's JetStream may use (e.g. "10GB"); default: the server's own."""
    audit_key: Path | None = None
    """The product's audit signing key (an nkey seed, owner-only): it signs the chain's anchors, the alerts
    and case bundles. Default: <data dir>/auth/audit.nk, made on first start; `ticketing audit key` prints
    its public half, which readers pin."""
    audit_public_key: str | None = None
    """The audit key (public, `A...`) that `audit verify` and `audit check` hold anchors and bundles to;
    default: the public half of `audit_key` when that file is at hand."""
    instance: str | None = None
    """This instance's name (in `ticketing status` and as the holder of its parts' leases); default: the host's
    name and serve's process id."""
    stream_replicas: int = 1
    """Copies of each stream (events, alerts, anchors, parked messages) on the NATS cluster: 3 on three
    nodes, so losing one loses nothing; existing streams are brought to it at start."""
    lease_seconds: float = 5.0
    """On PostgreSQL, how long a part's lease lasts unrenewed: another instance takes the part over within
    this plus a renewal (a third of it) after its holder dies or stalls."""
    audit_anchor_seconds: float = 60.0
    """At most how often the hash chain's head is published to the TICKETING_AUDIT stream (and at every stop)."""
    metrics_port: int = 9464
    """Where serve answers /metrics (Prometheus), /ready and /live on 127.0.0.1; 0 turns it off."""
    console_port: int = 8080
    """Where serve's web console listens (http); 0 turns it off."""
    console_host: str = "127.0.0.1"
    """The console's bind address: keep loopback, and put a TLS proxy in front for other machines."""
    console_idle_hours: float = 8.0
    """A console session ends after this long without a request."""
    nats_port: int = 4222
    """Port the embedded nats-server prefers; a free one is taken when it is busy."""
    log_level: str = "INFO"
    relay_batch: int = 500
    relay_poll_seconds: float = 1.0
    """The relay is woken on every commit; this poll is only a safety net."""
    sqlite_busy_timeout_ms: int = 10_000
    """How long a SQLite write waits for a lock held elsewhere before `unavailable`."""
    writer_batch: int = 256
    """Most commands committed in one transaction (group commit)."""
    compensation_limit: Decimal = Decimal("500.00")
    """The most compensation an agent may grant; above it a supervisor resolves."""
    sla_policy: Path | None = None
    """The SLA policy file (TOML); default: infra/sla_policy.toml, shipped with the product."""
    danger_rules: Path | None = None
    """The dangerous-customer rules (TOML); default: infra/danger_rules.toml, shipped with the product."""
    assessment_rules: Path | None = None
    """The staff assessment's weights, grades and streaks (TOML); default: infra/assessment_rules.toml."""
    danger_tick_seconds: float = 1.0
    """How often the dangerous-customer monitor applies the rules (reasons age out with time)."""
    timezone: str = "UTC"
    """The department's time zone: where its days, months and quarters begin (dashboard, report)."""
    projection_linger_seconds: float = 0.1
    """Under load, the read models take what comes this long after their last batch in one transaction
    (an event after a quiet spell is applied at once): they lag by up to this much more, for a fraction of
    the work per event."""
    sla_tick_seconds: float = 0.2
    """How often the SLA monitor looks for limits falling due (an alert comes at most this late)."""
    callback_delay_hours: float = 24.0
    """A resolved case's callback is due this long after the resolution (回访: within the day), or sooner
    when the SLA policy gives the case's `callback` a shorter limit."""
    callback_max_attempts: int = 3
    """Failed attempts after which a callback is missed."""

    @field_validator("database_url", "readmodel_url")
    @classmethod
    def _driver_installed(cls, value: str | None) -> str | None:
        if value and sqlalchemy_url(value).startswith("postgresql+psycopg"):
            import importlib.util

            if importlib.util.find_spec("psycopg") is None:
                raise ValueError("a PostgreSQL URL needs the PostgreSQL driver, which this install lacks: "
                                 "pip install 'ticketing[postgres]' (psycopg 3)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai, UTC)") from None
        return value

    @property
    def event_store_url(self) -> str:
        if self.database_url:
            return sqlalchemy_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'events.db').resolve()}"

    @property
    def read_model_url(self) -> str:
        if self.readmodel_url:
            return sqlalchemy_url(self.readmodel_url)
        if self.database_url:
            return sqlalchemy_url(self.database_url)
        return f"sqlite:///{(self.data_dir / 'readmodels.db').resolve()}"

    @property
    def nats_url_file(self) -> Path:
        return self.data_dir / "nats.url"

    @property
    def auth_dir(self) -> Path:
        return self.data_dir / "auth"

    @property
    def system_credentials(self) -> Path:
        return self.nats_credentials or self.auth_dir / "system.nk"

    @property
    def responder_credentials(self) -> Path:
        return self.nats_responder_credentials or self.auth_dir / "responder.nk"

    @property
    def client_credentials(self) -> Path:
        return self.credentials or self.auth_dir / "operator.nk"

    @property
    def instance_name(self) -> str:
        return self.instance or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def audit_key_file(self) -> Path:
        return self.audit_key or self.auth_dir / "audit.nk"

    @property
    def cipher_key_file(self) -> Path:
        return self.data_dir / "cipher.key"

    def as_env(self, **overrides: object) -> dict[str, str]:
        """These settings as the environment of a child process."""
        values = self.model_dump() | overrides
        if isinstance(values["data_dir"], Path):
            values["data_dir"] = values["data_dir"].resolve()
        return {f"TICKETING_{name.upper()}": str(value) for name, value in values.items() if value is not None}
