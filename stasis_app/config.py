"""Every knob of the service, read from the environment (prefix ``TWOWAY_``).

Durations are seconds (floats). Empty database URL means embedded Postgres; the ARI URL has
no default (``simulator`` asks for the built-in ARI simulator: no real calls).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stasis_app.domain.policy import (
    DestinationPolicy,
    InboundLimits,
    Limits,
    Numbering,
    PrefixRules,
    parse_hourly_limits,
    parse_prefixes,
)
from stasis_app.errors import ConfigError

# As deploy/asterisk/ari.conf ships: only for a local Asterisk (refused for a remote one).
DEFAULT_ARI_PASSWORD = "twoway"  # noqa: S105

# TWOWAY_ARI_URL value that runs the built-in ARI simulator instead of reaching an Asterisk.
ARI_SIMULATOR = "simulator"


class IdentityMode(StrEnum):
    DYNAMIC = "dynamic"  # per-call PJSIP auth + endpoint objects through ARI dynamic config
    STATIC = "static"  # dial through the trunk endpoint as configured (IP-authenticated sites)


class InboundRejectReason(StrEnum):
    """``DELETE /channels/{id}?reason=``: what the caller hears (measured on Asterisk 22)."""

    BUSY = "busy"  # 486 Busy Here
    REJECTED = "rejected"  # 403 Forbidden
    CONGESTION = "congestion"  # 503 Service Unavailable
    NORMAL = "normal"  # 603 Decline


class LogFormat(StrEnum):
    AUTO = "auto"  # human on a TTY, JSON lines otherwise
    JSON = "json"
    TEXT = "text"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "twoway-callback"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # another host name: it may resolve to anything
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:8480``) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - explicit empty host means all


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TWOWAY_", extra="ignore")

    # --- database -----------------------------------------------------------------------------
    database_url: SecretStr = SecretStr("")
    # LISTEN needs a session: behind a transaction-pooling PgBouncer point this at Postgres
    # directly (or at a session-pooled port). Empty: database_url.
    listen_database_url: SecretStr = SecretStr("")
    data_dir: Path = Field(default_factory=_default_data_dir)
    db_pool_size: int = Field(default=10, ge=1, le=200)

    # --- ARI ------------------------------------------------------------------------------------
    ari_url: str = ""
    ari_user: str = "twoway"
    ari_password: SecretStr = SecretStr(DEFAULT_ARI_PASSWORD)
    ari_app: str = "twoway-callback"
    ari_timeout: float = Field(default=10.0, gt=0)
    ari_heartbeat: float = Field(default=10.0, gt=0)
    ari_reconnect_max: float = Field(default=30.0, gt=0)

    # --- HTTP server (API, metrics, health) -----------------------------------------------------
    http_listen: str = "127.0.0.1:8480"
    metrics_listen: str = ""  # empty: /metrics and health are served on http_listen
    api_tokens: SecretStr = SecretStr("")  # comma-separated bearer tokens
    api_rate_limit: float = Field(default=50.0, gt=0)  # requests per second per token
    api_max_body: int = Field(default=64 * 1024, ge=1024)
    api_auth_failures_per_minute: int = Field(default=10, ge=1)  # per client address

    # --- inbound ani_2way_ trigger ----------------------------------------------------------------
    default_username: str = ""
    default_authname: str = ""
    default_md5secret: SecretStr = SecretStr("")
    inbound_ringback_ms: int = Field(default=0, ge=0, le=60_000)
    inbound_reject_reason: InboundRejectReason = InboundRejectReason.BUSY
    inbound_callback_delay: float = Field(default=5.0, ge=0)
    inbound_strip_prefix: str = ""  # removed from the caller number when present
    inbound_add_prefix: str = ""  # then put in front of it

    # --- queue --------------------------------------------------------------------------------
    instance_id: str = ""
    id_prefix: str = "twoway"
    lease_seconds: float = Field(default=120.0, ge=5)
    poll_max_sleep: float = Field(default=10.0, gt=0)
    claim_batch: int = Field(default=100, ge=1, le=5000)
    listen_probe_interval: float = Field(default=5.0, gt=0)
    listen_enabled: bool = True  # false: poll only (benchmark comparison, exotic poolers)
    db_retry_window: float = Field(default=300.0, ge=0)

    # --- call flow ------------------------------------------------------------------------------
    trunk_endpoint: str = "softswitch"
    sip_realm: str = ""
    identity_mode: IdentityMode = IdentityMode.DYNAMIC
    leg_a_timeout: float = Field(default=30.0, gt=0)
    leg_b_timeout: float = Field(default=45.0, gt=0)
    max_call_duration: float = Field(default=3600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_delay: float = Field(default=60.0, ge=0)
    retry_delay_max: float = Field(default=900.0, ge=0)
    retry_on_destination_failure: bool = False
    call_id_header: str = "X-Callback-Call-ID"
    max_concurrent: int = Field(default=100, ge=1)
    max_cps: float = Field(default=10.0, gt=0)
    shutdown_grace: float = Field(default=30.0, ge=0)

    # --- toll-fraud defences (docs/security.md); empty or 0: off, the seed's behaviour -------
    destination_allow_prefixes: str = ""  # leg B: comma-separated digit prefixes
    destination_deny_prefixes: str = ""
    callback_allow_prefixes: str = ""  # leg A
    callback_deny_prefixes: str = ""
    number_international_prefix: str = "00"  # normalisation before prefix matching
    number_national_prefix: str = ""  # e.g. 0: replaced by number_country_code
    number_country_code: str = ""
    user_max_live: int = Field(default=0, ge=0)  # per username, across instances
    user_max_per_hour: int = Field(default=0, ge=0)
    user_max_per_day: int = Field(default=0, ge=0)
    destination_hourly_limits: str = ""  # prefix=count,...
    inbound_max_per_caller_hour: int = Field(default=0, ge=0)
    inbound_max_per_minute: int = Field(default=0, ge=0)  # spike guard, all callers

    # --- logging --------------------------------------------------------------------------------
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO

    @field_validator("ari_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("http_listen", "metrics_listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value

    @field_validator(
        "destination_allow_prefixes",
        "destination_deny_prefixes",
        "callback_allow_prefixes",
        "callback_deny_prefixes",
    )
    @classmethod
    def _valid_prefixes(cls, value: str) -> str:
        parse_prefixes(value)
        return value

    @field_validator("number_international_prefix", "number_national_prefix", "number_country_code")
    @classmethod
    def _digits(cls, value: str) -> str:
        if value and not (value.isascii() and value.isdigit()):
            raise ValueError("must be digits")
        return value

    @model_validator(mode="after")
    def _national_needs_country(self) -> Settings:
        if bool(self.number_national_prefix) != bool(self.number_country_code):
            raise ValueError(
                "TWOWAY_NUMBER_NATIONAL_PREFIX and TWOWAY_NUMBER_COUNTRY_CODE go together"
            )
        return self

    @field_validator("destination_hourly_limits")
    @classmethod
    def _valid_hourly_limits(cls, value: str) -> str:
        parse_hourly_limits(value)
        return value

    @property
    def api_token_list(self) -> list[str]:
        return [t.strip() for t in self.api_tokens.get_secret_value().split(",") if t.strip()]

    @property
    def effective_instance_id(self) -> str:
        """Stable across restarts on one host and one ARI app, so a restart (by hand, Docker,
        supervisord) recovers its own rows at once; two live processes cannot share it (the
        instance lock, ``store.instance``)."""
        return self.instance_id or f"{socket.gethostname()}-{self.ari_app}"

    @property
    def destination_policy(self) -> DestinationPolicy:
        return DestinationPolicy(
            numbering=Numbering(
                self.number_international_prefix,
                self.number_national_prefix,
                self.number_country_code,
            ),
            destination=PrefixRules(
                parse_prefixes(self.destination_allow_prefixes),
                parse_prefixes(self.destination_deny_prefixes),
                "TWOWAY_DESTINATION_ALLOW_PREFIXES",
                "TWOWAY_DESTINATION_DENY_PREFIXES",
            ),
            callback=PrefixRules(
                parse_prefixes(self.callback_allow_prefixes),
                parse_prefixes(self.callback_deny_prefixes),
                "TWOWAY_CALLBACK_ALLOW_PREFIXES",
                "TWOWAY_CALLBACK_DENY_PREFIXES",
            ),
        )

    @property
    def limits(self) -> Limits:
        return Limits(
            user_max_live=self.user_max_live,
            user_max_per_hour=self.user_max_per_hour,
            user_max_per_day=self.user_max_per_day,
            destination_hourly=parse_hourly_limits(self.destination_hourly_limits),
        )

    @property
    def inbound_limits(self) -> InboundLimits:
        return InboundLimits(self.inbound_max_per_caller_hour, self.inbound_max_per_minute)


def refuse_default_ari_password(settings: Settings) -> None:
    """ConfigError when the well-known default ARI password would go to a remote Asterisk
    (checked at start): anyone who reaches its HTTP port could place calls with it."""
    if settings.ari_password.get_secret_value() != DEFAULT_ARI_PASSWORD or settings.ari_url in (
        "",
        ARI_SIMULATOR,
    ):
        return  # a password of one's own, or the built-in simulator
    host = urlsplit(settings.ari_url).hostname or ""
    if not is_loopback(host):
        raise ConfigError(
            "TWOWAY_ARI_PASSWORD is the default and TWOWAY_ARI_URL is not a loopback address: "
            "set a password of your own in ari.conf and TWOWAY_ARI_PASSWORD"
        )
