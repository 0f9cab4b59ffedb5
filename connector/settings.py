"""Typed settings: a YAML file, overridden by CONNECTOR_* environment variables (nested with __).

Order of precedence (highest first): keyword arguments, environment, the YAML file, defaults.
The file is `--config PATH`, else $CONNECTOR_CONFIG, else the bundled settings.example.yaml.
Every vendor's base URL, credentials, TLS and limits is a setting; limit defaults are the
vendors' published ones. Secrets are `SecretStr` and never printed.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from connector.errors import ConfigError
from connector.redaction import register_secrets

ENV_PREFIX = "CONNECTOR_"
PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_path(*parts: str) -> Path:
    """A file shipped with the project: the wheel's copy, else the source checkout's."""
    wheel_copy = PACKAGE_DIR / "_bundled" / Path(*parts)
    if wheel_copy.exists():
        return wheel_copy
    checkout = PACKAGE_DIR.parent
    if parts[0] == "settings.example.yaml":
        return checkout / "config" / "settings.example.yaml"
    return checkout / Path(*parts)


# The YAML document being loaded; a settings source of its own so the environment overrides it.
_yaml_document: ContextVar[dict[str, Any]] = ContextVar("_yaml_document", default={})


class _YamlDocumentSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _yaml_document.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_document.get())


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpOptions(_Model):
    """How to reach one vendor: TLS verification, a private CA bundle, timeouts."""

    verify_tls: bool = True
    ca_bundle: Path | None = None
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0


class RateLimit(_Model):
    """At most `requests` calls in any `per_seconds` window (a sliding window)."""

    requests: int = Field(gt=0)
    per_seconds: float = Field(gt=0)


def required_secret(value: SecretStr | None, setting: str) -> str:
    """The secret `setting` (a dotted path such as providers.slintel.api_key) holds, or a
    ConfigError naming the setting and its environment variable when it is unset or blank."""
    if value is None or not value.get_secret_value().strip():
        env = "CONNECTOR_" + setting.replace(".", "__").upper()
        raise ConfigError(f"{setting} is not set", fix=f"set it in the settings file or as {env}")
    return value.get_secret_value()


class CreditBudget(_Model):
    """Credits one pool may spend: per night (the calls of that night's runs) and per calendar
    month (UTC, every entry point: night, webhook and re-sync). None: no budget of that kind."""

    per_night: int | None = Field(default=None, ge=0)
    per_month: int | None = Field(default=None, ge=0)


class _PaidVendor(_Model):
    """A vendor whose credits may be budgeted, per credit pool (`credit_pools`)."""

    section: ClassVar[str]
    credit_pools: ClassVar[tuple[str, ...]] = ("credits",)
    budgets: dict[str, CreditBudget] = {}

    @model_validator(mode="after")
    def _known_pools(self) -> _PaidVendor:
        for pool in self.budgets:
            if pool not in self.credit_pools:
                raise ValueError(
                    f"providers.{self.section}.budgets.{pool}: {self.section} has no credit pool '{pool}'; "
                    f"use one of: {', '.join(self.credit_pools)}"
                )
        return self


class SalesforceSettings(_Model):
    enabled: bool = True
    mapping: str = "salesforce.lead.yaml"
    api_version: str = "59.0"
    auth_flow: Literal["client_credentials", "password"] = "client_credentials"
    # The org's My Domain token endpoint, e.g. https://acme.my.salesforce.com/services/oauth2/token
    token_url: str = "https://login.salesforce.com/services/oauth2/token"
    # Normally taken from the token response; set it to force another host.
    instance_url: str | None = None
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    http: HttpOptions = HttpOptions()
    query_page_size: int = Field(default=2000, ge=200, le=2000)
    write_batch_size: int = Field(default=200, ge=1, le=200)
    # Salesforce has no per-second limit; this only paces us so other integrations keep room.
    rate_limit: RateLimit = RateLimit(requests=25, per_seconds=1)
    # Share of the org's rolling-24h API allowance left for other integrations.
    daily_reserve_fraction: float = Field(default=0.2, ge=0, lt=1)


class SixSenseSettings(_PaidVendor):
    section: ClassVar[str] = "sixsense"
    # Credit budgets (`budgets`) per pool: enrichment (people/full, people and company enrichment)
    # and company_identification (IP lookups).
    credit_pools: ClassVar[tuple[str, ...]] = ("enrichment", "company_identification")

    enabled: bool = True
    # 6sense serves its APIs from three hosts.
    scribe_url: str = "https://scribe.6sense.com"
    api_url: str = "https://api.6sense.com"
    epsilon_url: str = "https://epsilon.6sense.com"
    api_token: SecretStr | None = None
    http: HttpOptions = HttpOptions()
    # Published: 100 requests per minute per token.
    rate_limit: RateLimit = RateLimit(requests=100, per_seconds=60)
    max_in_flight: int = Field(default=8, ge=1)
    # Sent when the lead has no country (the API's country field; the OpenAPI marks it required).
    default_country: str = "US"
    # 6sense does not charge again for a record re-enriched within 30 days of its first charge.
    cache_days: int = Field(default=30, ge=0)
    retries_on_server_error: int = Field(default=3, ge=0, le=10)
    # Company Identification: the X-6s-CustomID header partners must send
    # (<partner_name>-<customer_name>-<customer_api_token>); None sends no header.
    custom_id: SecretStr | None = None
    # Lead Scoring answers are free and move faster than firmographics: reuse them this long.
    score_cache_days: int = Field(default=1, ge=0)


class HubSpotSettings(_Model):
    # Off unless configured: an org without HubSpot must not fail for its missing credentials.
    enabled: bool = False
    mapping: str = "hubspot.contact.yaml"
    base_url: str = "https://api.hubapi.com"
    auth: Literal["private_app", "oauth"] = "private_app"
    access_token: SecretStr | None = None  # private app token
    client_id: SecretStr | None = None  # OAuth app
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    # The account's time zone: HubSpot's daily limit resets at its midnight.
    account_timezone: str = "America/New_York"
    http: HttpOptions = HttpOptions()
    # Published: 100 per 10 s (Free/Starter); 190 per 10 s (Professional/Enterprise).
    rate_limit: RateLimit = RateLimit(requests=100, per_seconds=10)
    search_rate_limit: RateLimit = RateLimit(requests=5, per_seconds=1)
    daily_limit: int = Field(default=250_000, gt=0)
    daily_reserve_fraction: float = Field(default=0.2, ge=0, lt=1)
    # Contacts per batch update (HubSpot accepts at most 100).
    write_batch_size: int = Field(default=100, ge=1, le=100)


class MarketoSettings(_Model):
    # Off unless configured: an org without Marketo must not fail for its missing credentials.
    enabled: bool = False
    mapping: str = "marketo.lead.yaml"
    rest_url: str = "https://000-AAA-000.mktorest.com/rest"
    identity_url: str = "https://000-AAA-000.mktorest.com/identity"
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    http: HttpOptions = HttpOptions()
    # Published: 100 calls per 20 s, 10 concurrent, 50,000 per day from midnight US Central.
    rate_limit: RateLimit = RateLimit(requests=100, per_seconds=20)
    max_in_flight: int = Field(default=10, ge=1)
    daily_quota: int = Field(default=50_000, gt=0)
    daily_reserve_fraction: float = Field(default=0.2, ge=0, lt=1)
    # Leads per Sync Leads call (Marketo accepts at most 300).
    write_batch_size: int = Field(default=300, ge=1, le=300)


class SlintelSettings(_PaidVendor):
    section: ClassVar[str] = "slintel"

    enabled: bool = True
    base_url: str = "https://apiv2.slintel.com"
    api_key: SecretStr | None = None
    http: HttpOptions = HttpOptions()
    # Published: 10 calls per second, 10 in flight, 10,000 per GMT day.
    rate_limit: RateLimit = RateLimit(requests=10, per_seconds=1)
    max_in_flight: int = Field(default=10, ge=1)
    daily_limit: int = Field(default=10_000, gt=0)
    # Every successful answer costs a credit, repeats included: never ask again inside this period.
    freshness_days: int = Field(default=90, ge=0)
    # Lead enrichment asks by email; when that finds nobody it tries these, in order (each try is
    # one more call against the daily limit, a no-match costs no credit).
    lead_fallbacks: list[Literal["linkedin_url", "name_company"]] = ["linkedin_url", "name_company"]


class ContactsApiSettings(_PaidVendor):
    section: ClassVar[str] = "contacts_api"

    enabled: bool = True
    base_url: str = "https://api.contacts.example"
    api_token: SecretStr | None = None
    http: HttpOptions = HttpOptions()
    rate_limit: RateLimit = RateLimit(requests=60, per_seconds=60)
    max_in_flight: int = Field(default=4, ge=1)
    freshness_days: int = Field(default=30, ge=0)
    # contacts_people: decision makers asked for per company (one credit per contact returned).
    decision_makers_per_company: int = Field(default=3, ge=1, le=100)
    # contacts_people: only these departments (the API's vocabulary, e.g. executive, finance,
    # information_technology); empty = any department.
    decision_maker_departments: list[str] = []


class SourcesSettings(_Model):
    salesforce: SalesforceSettings = SalesforceSettings()
    hubspot: HubSpotSettings = HubSpotSettings()
    marketo: MarketoSettings = MarketoSettings()


class ProvidersSettings(_Model):
    sixsense: SixSenseSettings = SixSenseSettings()
    slintel: SlintelSettings = SlintelSettings()
    contacts_api: ContactsApiSettings = ContactsApiSettings()


class WindowSettings(_Model):
    """The nightly window, in UTC; a manual run gets a window of the same length from now."""

    start: time = time(0, 0)
    length_minutes: int = Field(default=120, gt=0, le=24 * 60)


class SandboxSettings(_Model):
    """The emulators that stand in for the vendors on the embedded defaults."""

    enabled: bool = False
    # Keep the sandbox CRM's state beside the ledger so a second run meets what the first left.
    persist: bool = True


class LedgerSettings(_Model):
    # Default: sqlite file in data_dir. PostgreSQL: postgresql+psycopg://user@host/db
    url: str | None = None


class LimiterSettings(_Model):
    # "memory://" (one process) or "redis://host:port/db" (shared by every worker).
    url: str = "memory://"
    # Namespace of the limiter's Redis keys (one per deployment sharing a Redis).
    prefix: str = "connector:limits"
    # A call in flight holds a lease this long, refreshed while it runs; a dead worker's lease expires.
    lease_seconds: float = Field(default=60.0, gt=0)
    # How long callers wait for an unreachable Redis before deferring their leads (no call is
    # ever made without a grant).
    unreachable_wait_seconds: float = Field(default=30.0, ge=0)
    # Share of every daily quota the nightly batch leaves for the real-time webhook.
    realtime_reserve: float = Field(default=0.1, ge=0, lt=1)
    # Tests only: shifts the limiter's clock (e.g. to cross midnight GMT without waiting).
    clock_offset_seconds: float = 0.0


class CelerySettings(_Model):
    """Many workers: Celery on Redis."""

    broker_url: str = "redis://127.0.0.1:6379/1"
    # Longer than the longest task (a batch), so a slow batch is not delivered twice.
    visibility_timeout_seconds: int = Field(default=7200, gt=0)
    # The sweeper's period, and how long a queued lead may wait before it is queued again.
    sweep_every_seconds: int = Field(default=60, gt=0)
    queued_grace_seconds: int = Field(default=600, gt=0)
    # Hard limit on one batch task.
    task_time_limit_seconds: int = Field(default=1800, gt=0)
    # Leads per batch task: small batches keep every worker busy to the end of the night.
    batch_size: int = Field(default=50, ge=1, le=2000)
    # Beat runs on redbeat: the schedule and a lock live in Redis (None: the broker's), so a second
    # beat stands by. The leader renews the lock every fifth of the timeout; when it dies, a standby
    # takes over once the lock expires (polling every fifth of the timeout).
    beat_redis_url: str | None = None
    beat_key_prefix: str = "connector:beat:"
    beat_lock_timeout_seconds: int = Field(default=300, ge=2)
    # Tests only: send the kick-off every this many seconds instead of nightly at window.start.
    kickoff_every_seconds: float | None = Field(default=None, gt=0)


class WebhookSettings(_Model):
    """The real-time webhook (connector.webhook): Marketo's "Person is Created" call."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # respond: the reply carries the mapped values (Marketo's response mappings write them);
    # writeback: the connector writes through the Marketo source and the reply carries none.
    mode: Literal["respond", "writeback"] = "respond"
    # Shared secrets Marketo sends as `Authorization: Token <secret>` (a custom header); two
    # allowed so one can be rotated. None configured: the webhook refuses to start.
    secrets: list[SecretStr] = Field(default=[], max_length=2)
    # Set for senders that sign (not Marketo): X-Connector-Signature: t=<unix>,v1=<hex
    # HMAC-SHA256 of "<t>.<raw body>">; then every call must carry a valid, fresh signature.
    signing_secret: SecretStr | None = None
    signature_tolerance_seconds: int = Field(default=300, gt=0)
    # Bodies over this many bytes are refused (413) unread; a Marketo lead template is a few KB.
    max_body_bytes: int = Field(default=65536, ge=1024, le=1_048_576)
    # Time a call may take before the reply is 202 and the lead is finished as a queued task
    # (Marketo gives up after 30 s).
    budget_seconds: float = Field(default=10.0, gt=0, lt=30)
    # Batches one webhook process works on at once (threads); each batch takes every lead waiting
    # (up to 50) through the pipeline together.
    workers: int = Field(default=8, ge=1, le=64)
    # Bearer token of the admin API (/admin/..., connector.admin_api) served beside the webhook;
    # None: no admin API is mounted.
    admin_token: SecretStr | None = Field(default=None, min_length=16)

    @field_validator("secrets", mode="after")
    @classmethod
    def _long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(s.get_secret_value()) < 16 for s in value):
            raise ValueError("every webhook secret must be at least 16 characters (use a random value)")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("~/.local/share/crm-enrichment-connector")
    mappings_dir: Path | None = None
    initial_watermark: datetime | None = None
    poll_overlap_minutes: int = Field(default=5, ge=0)
    workers: int = Field(default=8, ge=1, le=64)
    # A worker's claim on a lead lasts this long; past it (the worker died) the lead is retried.
    claim_ttl_seconds: int = Field(default=900, gt=0)
    # Divides every vendor window and wait, in the sandbox and the limiter alike (tests only).
    time_scale: float = Field(default=1.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    window: WindowSettings = WindowSettings()
    ledger: LedgerSettings = LedgerSettings()
    limiter: LimiterSettings = LimiterSettings()
    celery: CelerySettings = CelerySettings()
    webhook: WebhookSettings = WebhookSettings()
    sandbox: SandboxSettings = SandboxSettings()
    sources: SourcesSettings = SourcesSettings()
    providers: ProvidersSettings = ProvidersSettings()

    @field_validator("data_dir", "mappings_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("initial_watermark", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value

    # Keyword arguments, then the environment, then the YAML file; no .env magic, no secrets dir.
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlDocumentSource(settings_cls))

    @property
    def ledger_url(self) -> str:
        return self.ledger.url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def resolved_mappings_dir(self) -> Path:
        return self.mappings_dir or bundled_path("mappings")

    def secret_values(self) -> list[str]:
        """Every configured secret's plain value, for redaction."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                plain = value.get_secret_value()
                if plain:
                    found.append(plain)
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, (list, tuple)):
                for item in value:
                    walk(item)

        walk(self)
        return found


def default_config_path() -> Path:
    env = os.environ.get(f"{ENV_PREFIX}CONFIG")
    return Path(env).expanduser() if env else bundled_path("settings.example.yaml")


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(
            f"settings file {path} does not exist",
            fix="pass --config with an existing file, or set CONNECTOR_CONFIG; "
            "config/settings.example.yaml documents every key",
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"settings file {path} is not UTF-8 text (byte {exc.start} cannot be read)",
                          fix="point --config at the YAML settings file, saved as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"settings file {path} is not valid YAML{where}",
            fix="correct the YAML syntax there (indentation, a missing ':' or quote)",
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"settings file {path} must hold a mapping of keys at the top level, "
            f"not a {type(document).__name__}",
            fix="start the file with keys such as 'sources:' and 'providers:'",
        )
    return document


def _env_names() -> list[str]:
    return [name for name in os.environ if name.startswith(ENV_PREFIX) and name != f"{ENV_PREFIX}CONFIG"]


def _describe_error(path: Path, error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    env_name = ENV_PREFIX + "__".join(str(part).upper() for part in error["loc"])
    origin = f"environment variable {env_name}" if env_name in os.environ else f"settings file {path}"
    if error["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{key}' (fix: remove it or correct its spelling)"
    # Never echo the input: it may be a secret.
    return f"{origin}: key '{key}': {error['msg']} (fix: set a valid value for '{key}')"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from `path` (or the default file) and the environment; raise ConfigError."""
    config_path = (path or default_config_path()).expanduser().resolve()
    token = _yaml_document.set(_read_yaml(config_path))
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe_error(config_path, err) for err in exc.errors()]
        raise ConfigError(
            "invalid settings:\n  " + "\n  ".join(lines),
            fix="see config/settings.example.yaml for every key with its meaning",
        ) from None
    finally:
        _yaml_document.reset(token)
    # Every process that loads settings (CLI, webhook, Celery worker) redacts its secrets by value.
    register_secrets(settings.secret_values())
    return settings


__all__ = [
    "HttpOptions",
    "RateLimit",
    "SalesforceSettings",
    "SixSenseSettings",
    "Settings",
    "WindowSettings",
    "load_settings",
    "default_config_path",
    "bundled_path",
]
