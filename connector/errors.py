"""The connector's error tree. Every failure the pipeline meets is one of these, as data.

    ConnectorError
    ├── ConfigError          bad settings, bad credentials (401/403): fix the configuration; stop
    ├── MappingError         a mapping file is wrong: fix the file; stop before any vendor call
    ├── InputError           what a command was given is wrong: fix the input; nothing is sent
    │   └── InvalidRecordId  a record id that is not of its CRM's form (typed, or sent by the CRM)
    ├── TransientError       worth retrying with backoff (timeouts, 5xx, dropped connections)
    │   └── RateLimited      the vendor said "slow down" (429, 606, ...): pause, then retry
    ├── QuotaExhausted       a daily quota or credit pool is spent: park the leads until it resets
    ├── WindowClosed         the night's window ended before the call could start: defer
    └── LeadError            this lead alone cannot be processed; the reason goes to the ledger
        ├── InvalidEmail     fails local validation; no vendor is called
        ├── NoMatch          the vendor knows nothing about it
        └── RejectedRequest  the vendor refused this lead's request (400/422): never retried as-is

`reason` is the short, stable word the ledger stores; `fix` tells a person what to do.
"""

from __future__ import annotations

from connector.redaction import redact


class ConnectorError(Exception):
    reason = "error"
    retryable = False

    def __init__(self, message: str, *, fix: str | None = None, reason: str | None = None) -> None:
        # Messages carry vendor text (error bodies may echo a credential): redacted once, here,
        # so no exception, log line, ledger row or CLI output built from one holds a secret.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.fix = fix
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}" if self.fix else self.message


class ConfigError(ConnectorError):
    reason = "config_error"


class MappingError(ConnectorError):
    reason = "mapping_error"


class InputError(ConnectorError):
    reason = "bad_input"


class InvalidRecordId(InputError):
    """A record id its CRM cannot have. Checked before the id reaches the CRM, whose own answer
    (a 400 about the query) would read like a mapping problem."""

    reason = "invalid_record_id"

    def __init__(self, record_id: str, *, source: str, expected: str, returned: bool = False) -> None:
        """`returned`: the CRM itself answered with the id (so the input to fix is the settings)."""
        shown = record_id if len(record_id) <= 60 else record_id[:60] + "..."
        if returned:
            message = f"{source} answered with record id {shown!r}, which is not a {source} record id ({expected})"
            fix = (f"check that sources.{source}'s URL points at the {source} API itself, not at a proxy or "
                   "another service that rewrites its answers")
        else:
            message = f"{source}: record id {shown!r} is not a {source} record id ({expected})"
            fix = (f"give the record's id exactly as {source} shows it, or, for a lead the connector has "
                   "already polled, its email address")
        super().__init__(message, fix=fix)
        self.record_id = record_id
        self.source = source


class TransientError(ConnectorError):
    reason = "vendor_unavailable"
    retryable = True


class RateLimited(TransientError):
    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class QuotaExhausted(ConnectorError):
    """A quota or credit pool is spent; `reset_at` is when it refills (None: an operator must act)."""

    reason = "quota"
    retryable = True

    def __init__(self, message: str, *, reason: str = "quota", reset_at: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.reset_at = reset_at


class WindowClosed(ConnectorError):
    reason = "window_end"
    retryable = True


class LeadError(ConnectorError):
    reason = "lead_error"


class InvalidEmail(LeadError):
    reason = "invalid_email"


class NoMatch(LeadError):
    reason = "no_match"


class RejectedRequest(LeadError):
    reason = "rejected_request"


__all__ = [
    "ConfigError",
    "ConnectorError",
    "InputError",
    "InvalidEmail",
    "InvalidRecordId",
    "LeadError",
    "MappingError",
    "NoMatch",
    "QuotaExhausted",
    "RateLimited",
    "RejectedRequest",
    "TransientError",
    "WindowClosed",
]
