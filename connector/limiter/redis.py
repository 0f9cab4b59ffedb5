"""The shared limiter: one budget in Redis for every worker, the webhook and the admin commands.

Each acquire is one Lua script (redis-py `register_script`, EVALSHA) that reads the server's
clock (`TIME`), so worker clock drift cannot loosen a limit. Per vendor key it keeps:

* `{key}:win`   sorted set, one member per call in the sliding window (score: ms). While the call
                runs its score is its lease's end, so a call that outlives the window keeps its
                slot; the release moves it to the call's end (a dead worker's slot goes a window
                after its lease)
* `{key}:fly`   sorted set of leases, one per call in flight (score: lease expiry in ms); a lease
                is refreshed while its call runs and reclaimed when a dead worker stops refreshing
* `{key}:cool`  shared cooldown (ms) after a 429: extended, never shortened
* `{key}:day:{label}` calls counted on the vendor's day; seeded from the ledger when missing, so a
                Redis restart does not reset the day's spend
* `{key}:grants` all grants ever (tests compare it with the vendor's request log)

The `limits` library covers windows but not leases, cooldowns or quota seeding, hence the script.
If Redis is unreachable, callers wait (retrying) and, past `unreachable_wait_seconds`, raise
TransientError: a call is never made without a grant.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from connector.errors import QuotaExhausted, TransientError, WindowClosed
from connector.limiter import LimitSpec, Permit, batch_quota, vendor_day

ACQUIRE = """
local win, fly, cool, day = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local grants = KEYS[5]
local requests = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local max_fly = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])
local member = ARGV[5]
local offset_ms = tonumber(ARGV[6])
local quota = tonumber(ARGV[7])
local day_start_ms = tonumber(ARGV[8])
local day_end_ms = tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + offset_ms
if quota >= 0 then
  if now < day_start_ms or now >= day_end_ms then return {3, 0} end
  local used = redis.call('GET', day)
  if not used then return {4, 0} end
  if tonumber(used) >= quota then return {2, day_end_ms - now} end
end
local paused = tonumber(redis.call('GET', cool) or '0')
if paused > now then return {0, paused - now} end
redis.call('ZREMRANGEBYSCORE', win, '-inf', now - per_ms)
if redis.call('ZCARD', win) >= requests then
  local oldest = tonumber(redis.call('ZRANGE', win, 0, 0, 'WITHSCORES')[2])
  -- Every slot still in flight: it frees when a call ends, so ask again soon.
  if oldest > now then return {0, 50} end
  return {0, oldest + per_ms - now}
end
if max_fly > 0 then
  redis.call('ZREMRANGEBYSCORE', fly, '-inf', now)
  if redis.call('ZCARD', fly) >= max_fly then
    local first = redis.call('ZRANGE', fly, 0, 0, 'WITHSCORES')
    return {0, math.min(50, tonumber(first[2]) - now)}
  end
  redis.call('ZADD', fly, now + lease_ms, member)
  redis.call('PEXPIRE', fly, lease_ms * 2)
end
redis.call('ZADD', win, now + lease_ms, member)
redis.call('PEXPIRE', win, math.ceil(per_ms * 2) + lease_ms + 1000)
redis.call('INCR', grants)
if quota >= 0 then
  redis.call('INCR', day)
  redis.call('PEXPIREAT', day, day_end_ms - offset_ms + 86400000)
end
return {1, now}
"""

RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1]) end
return 1
"""

REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
"""

PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1]) + 1000) end
return until_ms
"""

QuotaSeed = Callable[[LimitSpec, str], int]


def window_ms(spec: LimitSpec) -> int:
    """The window in whole milliseconds, rounded up: a window shorter than the vendor's (1/15 s
    cut to 66 ms) would let a call through that the vendor still counts in its window."""
    return math.ceil(spec.per_seconds * 1000 - 1e-6)


class _RedisPermit:
    def __init__(self, limiter: RedisLimiter, spec: LimitSpec, member: str, granted_at_ms: int) -> None:
        self.limiter, self.spec, self.member = limiter, spec, member
        self.granted_at = granted_at_ms / 1000  # on the Redis server's clock
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self.limiter._release(self)

    def __enter__(self) -> _RedisPermit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RedisLimiter:
    """Limits shared through Redis. `prefix` namespaces the keys (one per deployment or test)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "connector:limits",
        lease_seconds: float = 60.0,
        clock_offset_seconds: float = 0.0,
        quota_seed: QuotaSeed | None = None,
        unreachable_wait_seconds: float = 30.0,
        socket_timeout: float = 2.0,
    ) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self.prefix = prefix
        self.lease_ms = int(lease_seconds * 1000)
        self.offset_ms = int(clock_offset_seconds * 1000)
        self.quota_seed = quota_seed
        self.unreachable_wait_seconds = unreachable_wait_seconds
        self._acquire = self.client.register_script(ACQUIRE)
        self._release_script = self.client.register_script(RELEASE)
        self._refresh = self.client.register_script(REFRESH)
        self._pause = self.client.register_script(PAUSE)
        self._held: dict[str, _RedisPermit] = {}
        self._held_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._stop = threading.Event()
        self._server_offset: float | None = None

    # ---- keys and clocks ---------------------------------------------------------------------

    def _keys(self, spec: LimitSpec, day: str = "") -> list[str]:
        base = f"{self.prefix}:{{{spec.key}}}"  # one hash slot per vendor key (Redis Cluster)
        return [f"{base}:win", f"{base}:fly", f"{base}:cool", f"{base}:day:{day}", f"{base}:grants"]

    def _server_now(self) -> float:
        """The Redis server's clock (plus the test offset), for choosing the vendor's day."""
        if self._server_offset is None:
            seconds, micros = self.client.time()
            self._server_offset = seconds + micros / 1e6 - time.time()
        return time.time() + self._server_offset + self.offset_ms / 1000

    # ---- protocol ----------------------------------------------------------------------------

    def acquire(self, spec: LimitSpec, *, deadline: float | None = None, realtime: bool = False) -> Permit:
        member = uuid.uuid4().hex
        quota = batch_quota(spec, realtime)
        unreachable_since: float | None = None
        while True:
            try:
                # Inside the try: the first acquire of a process reads Redis's clock here.
                now = self._server_now()
                day, day_end = vendor_day(spec, now) if quota is not None else ("", 0.0)
                day_start = day_end - spec.day_seconds if quota is not None else 0.0
                keys = self._keys(spec, day)
                status, wait_ms = self._acquire(keys=keys, args=[
                    spec.requests, window_ms(spec), spec.max_in_flight or 0, self.lease_ms, member,
                    self.offset_ms, -1 if quota is None else quota, int(day_start * 1000), int(day_end * 1000),
                ])
                unreachable_since = None
            except redis.RedisError as exc:
                # Fail closed: no grant, no call. Wait for Redis to come back, within bounds.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.unreachable_wait_seconds:
                    raise TransientError(f"the shared limiter (Redis) is unreachable: {type(exc).__name__}",
                                         reason="limiter_unavailable") from None
                self._sleep_before(0.2, deadline, spec)
                continue
            if status == 1:
                permit = _RedisPermit(self, spec, member, wait_ms)
                if spec.max_in_flight:
                    self._hold(permit)
                return permit
            if status == 2:
                raise QuotaExhausted(
                    f"{spec.key.split(':')[0]}: today's quota ({quota} calls"
                    + (", the rest reserved for real-time" if not realtime and spec.realtime_reserve else "")
                    + ") is spent", reason="quota", reset_at=day_end - self.offset_ms / 1000 - (self._server_offset or 0))
            if status == 3:
                self._server_offset = None  # the day turned over between our clock and Redis's
                continue
            if status == 4:
                self._seed_day(spec, keys[3], day, day_end)
                continue
            self._sleep_before(wait_ms / 1000, deadline, spec)

    def _sleep_before(self, seconds: float, deadline: float | None, spec: LimitSpec) -> None:
        if deadline is not None and time.time() + seconds >= deadline:
            raise WindowClosed(f"the window ends before {spec.key.split(':')[0]} allows another call")
        time.sleep(max(0.001, min(seconds, 1.0)))

    def _seed_day(self, spec: LimitSpec, key: str, day: str, day_end: float) -> None:
        """A missing day key (a Redis restart, a new day) starts from the ledger's count."""
        spent = self.quota_seed(spec, day) if self.quota_seed else 0
        expire_at = int((day_end + 86400) * 1000)
        self.client.set(key, spent, nx=True, pxat=expire_at)

    def _release(self, permit: _RedisPermit) -> None:
        with self._held_lock:
            self._held.pop(permit.member, None)
        keys = self._keys(permit.spec)
        try:
            self._release_script(keys=keys[:2], args=[permit.member, self.offset_ms])
        except redis.RedisError:
            pass  # the lease expires by itself; the window slot keeps its grant time

    def _hold(self, permit: _RedisPermit) -> None:
        with self._held_lock:
            self._held[permit.member] = permit
            if self._refresher is None or not self._refresher.is_alive():
                self._refresher = threading.Thread(target=self._refresh_loop, name="lease-refresh", daemon=True)
                self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.lease_ms / 3000):
            with self._held_lock:
                held = list(self._held.values())
            for permit in held:
                try:
                    self._refresh(keys=[self._keys(permit.spec)[1]], args=[permit.member, self.lease_ms, self.offset_ms])
                except redis.RedisError:
                    pass

    def pause(self, key: str, seconds: float) -> None:
        spec = LimitSpec(key=key, requests=1, per_seconds=1)
        try:
            self._pause(keys=[self._keys(spec)[2]], args=[int(seconds * 1000), self.offset_ms])
        except redis.RedisError:
            pass  # callers wait on Redis anyway while it is away

    def grants(self, key: str) -> int:
        spec = LimitSpec(key=key, requests=1, per_seconds=1)
        return int(self.client.get(self._keys(spec)[4]) or 0)

    def used_today(self, spec: LimitSpec) -> int:
        day, _ = vendor_day(spec, self._server_now())
        return int(self.client.get(self._keys(spec, day)[3]) or 0)

    def close(self) -> None:
        self._stop.set()
        self.client.close()

    def debug_state(self, spec: LimitSpec) -> dict[str, Any]:
        win, fly, cool, _, grants = self._keys(spec)
        return {"window": self.client.zcard(win), "in_flight": self.client.zcard(fly),
                "cooldown_ms": self.client.get(cool), "grants": self.client.get(grants)}
