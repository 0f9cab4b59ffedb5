"""HTTP plumbing shared by every source and provider.

* `build_httpx_client` / `build_requests_session`: timeouts, TLS verification with an optional
  private CA bundle, and no transport or library retries: every request on the wire is one the
  connector decided to make, after the limiter granted it.
* `MeteredHttp`: one vendor's httpx client behind the limiter. Each attempt acquires a permit,
  the vendor's `classify` turns the reply into an error (or None for a usable reply), and the
  retry policy is bounded: rate limits pause the whole vendor key and wait, transient errors
  back off, everything else is raised at once.
"""

from __future__ import annotations

import dataclasses

import hashlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import requests
from requests.adapters import HTTPAdapter

from connector.errors import ConnectorError, RateLimited, TransientError, WindowClosed
from connector.limiter import Limiter, LimitSpec
from connector.settings import HttpOptions

Classifier = Callable[[httpx.Response], ConnectorError | None]


def credential_tag(secret: str) -> str:
    """A short, non-reversible tag for a credential, used in limiter keys and logs."""
    return hashlib.sha256(secret.encode()).hexdigest()[:10]


def ssl_verify(options: HttpOptions) -> ssl.SSLContext | bool:
    if not options.verify_tls:
        return False
    if options.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(options.ca_bundle))
    return ssl.create_default_context()


def build_httpx_client(
    options: HttpOptions, *, base_url: str, headers: dict[str, str], max_connections: int = 20
) -> httpx.Client:
    verify = ssl_verify(options)
    timeout = httpx.Timeout(options.read_timeout_seconds, connect=options.connect_timeout_seconds)
    transport = httpx.HTTPTransport(
        verify=verify,
        retries=0,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )
    return httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)


def build_requests_session(options: HttpOptions, *, pool_size: int = 20) -> requests.Session:
    session = requests.Session()
    session.verify = str(options.ca_bundle) if (options.verify_tls and options.ca_bundle) else options.verify_tls
    adapter = HTTPAdapter(max_retries=0, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(frozen=True)
class RetryPolicy:
    transient_attempts: int = 3  # tries for timeouts, dropped connections and 5xx
    rate_limited_attempts: int = 6  # tries after 429s, each after the shared pause
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0


class MeteredHttp:
    """A vendor's httpx client whose every attempt first passes the shared limiter."""

    def __init__(
        self,
        *,
        client: httpx.Client,
        limiter: Limiter,
        spec: LimitSpec,
        classify: Classifier,
        policy: RetryPolicy = RetryPolicy(),
        time_scale: float = 1.0,
        on_call: Callable[[], None] | None = None,
        realtime: bool = False,
    ) -> None:
        self.realtime = realtime
        self.client = client
        self.limiter = limiter
        self.spec = spec
        self.classify = classify
        self.policy = policy
        self.time_scale = time_scale
        self.on_call = on_call

    def request(self, method: str, url: str, *, deadline: float | None, **kwargs: Any) -> httpx.Response:
        transient_left = self.policy.transient_attempts
        limited_left = self.policy.rate_limited_attempts
        backoff = self.policy.backoff_seconds / self.time_scale
        while True:
            if deadline is not None and time.time() >= deadline:
                raise WindowClosed("the window ended before this call could start")
            with self.limiter.acquire(self.spec, deadline=deadline, realtime=self.realtime):
                if self.on_call:
                    self.on_call()
                try:
                    response = self.client.request(method, url, **kwargs)
                    error = self.classify(response)
                except httpx.TimeoutException:
                    error = TransientError("the vendor did not answer in time (timeout)")
                except httpx.TransportError as exc:
                    error = TransientError(f"connection to the vendor failed ({type(exc).__name__})")
                if isinstance(error, RateLimited):
                    # Paused before the permit goes back, so no worker is granted a call in between.
                    pause = error.retry_after if error.retry_after is not None else self.spec.per_seconds
                    self.limiter.pause(self.spec.key, pause)
            if error is None:
                return response
            if isinstance(error, RateLimited):
                limited_left -= 1
                if limited_left <= 0:
                    raise error
                continue
            if isinstance(error, TransientError):
                transient_left -= 1
                if transient_left <= 0:
                    raise error
                wait = min(backoff, self.policy.max_backoff_seconds / self.time_scale)
                if deadline is not None and time.time() + wait >= deadline:
                    raise error
                time.sleep(wait)
                backoff *= 2
                continue
            raise error

    def close(self) -> None:
        self.client.close()


def metered_http(context: Any, *, client: httpx.Client, spec: LimitSpec, classify: Classifier,
                 policy: RetryPolicy = RetryPolicy()) -> MeteredHttp:
    """A MeteredHttp wired to a VendorContext: its time scale, real-time share and spend recording.
    A spec with a daily quota keeps `limiter.realtime_reserve` of it for the webhook (unless it
    sets its own share)."""
    if spec.daily_quota and not spec.realtime_reserve:
        spec = dataclasses.replace(spec, realtime_reserve=context.settings.limiter.realtime_reserve)
    record = context.record_call if (spec.daily_quota and context.record_call) else None
    return MeteredHttp(client=client, limiter=context.limiter, spec=spec, classify=classify, policy=policy,
                       time_scale=context.settings.time_scale, realtime=context.realtime,
                       on_call=(lambda: record(spec)) if record else None)


def retry_after_seconds(headers: Any, time_scale: float = 1.0) -> float | None:
    """Retry-After in seconds (delta form; an HTTP date is read as seconds from now)."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value)) / time_scale
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time()) / time_scale
        except (TypeError, ValueError):
            return None
