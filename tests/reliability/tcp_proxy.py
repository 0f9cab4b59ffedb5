"""A small TCP proxy for network-fault tests (toxiproxy's server is a Go binary we cannot install).

`TcpProxy(upstream_port)` listens on 127.0.0.1 (a random port) in a background thread running an
asyncio loop and forwards every connection to 127.0.0.1:<upstream_port>, byte for byte: it is
transparent at the TCP level, so TLS between the client and the upstream still verifies (the
sandbox certificate is issued for 127.0.0.1, whatever the port).

Toxics, switchable while traffic flows (every setter is thread-safe):

* `set_latency(upstream=s, downstream=s)`: every chunk waits this long before it is forwarded in
  that direction ("upstream" = client -> server, "downstream" = server -> client). It is a delay
  line, not a per-chunk sleep: chunks keep their order and a reply of many chunks is late by the
  latency once, not once per chunk.
* `drop()` / `restore()` / `drop_for(seconds)`: while dropping, every open connection is reset
  (RST, both sides) and every new one is accepted and reset at once.
* `reset_on_reply(...)`: the lost-reply toxic. The connection is reset (RST to the client, the
  upstream side closed) when the upstream's reply to a targeted request starts arriving, before any
  byte of that reply is forwarded: the server has received and acted on the request (it answers
  only after its handler returned), the client never sees the answer.

How a request is targeted (the proxy cannot parse HTTPS):

  Per connection the proxy counts "exchanges": the client -> server bytes sent since the previous
  server -> client bytes form the request of the exchange, and the first server -> client chunk
  after them is the start of its reply. An exchange is targeted when its request is at least
  `min_request_bytes` long and, if `marker` is given (plain HTTP only), its first 64 KiB contain
  `marker`. `skip` targeted exchanges are let through first, then `count` are reset.

  Over TLS the first exchanges of a connection are the handshake (and, in TLS 1.3, the server's
  session tickets, which may be sent while the client's first request is in flight), so with
  `skip_handshake_exchanges=2` the first two exchanges of each connection are never targeted. A
  large request is then recognised by size: for the Salesforce emulator a composite/sobjects
  PATCH of a batch of leads is several KiB, while a token request, a describe, a query or a
  re-read of a few ids stays under about 2.5 KiB (`exchanges` records every size for a test to
  check). A request sent as the first one on a fresh TLS connection can be missed by this
  heuristic; the pipeline's calls reuse a warm keep-alive connection.

Only 127.0.0.1 (or ::1 / localhost) may be the upstream; the proxy never connects anywhere else.
Every loop is bounded by its socket's life, and `stop()` aborts every connection and joins the
thread with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
CHUNK = 65536
MARKER_WINDOW = 65536


@dataclass
class ResetRule:
    min_request_bytes: int = 0
    marker: bytes | None = None
    skip: int = 0
    count: int = 1
    skip_handshake_exchanges: int = 0


@dataclass
class Exchange:
    """One request/reply turn seen on a connection (what the reset heuristic looked at)."""

    connection: int
    index: int  # 1-based, per connection
    request_bytes: int
    at: float
    reset: bool = False


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0  # accepted and reset while dropping
    dropped: int = 0  # open connections reset by drop()
    resets: int = 0  # connections reset by a reset_on_reply rule
    bytes_up: int = 0
    bytes_down: int = 0
    exchanges: list[Exchange] = field(default_factory=list)


class _Conn:
    def __init__(self, number: int, client: asyncio.StreamWriter) -> None:
        self.number = number
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.last_direction = "down"  # so the first client bytes open exchange 1
        self.request_bytes = 0
        self.request_head = bytearray()
        self.exchanges = 0
        self.closed = False


def _abort(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST: SO_LINGER 0, then abort (no flush, no FIN)."""
    if writer is None:
        return
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *, name: str = "proxy") -> None:
        if upstream_host not in LOOPBACK:
            raise ValueError(f"the test proxy only forwards to loopback, not {upstream_host!r}")
        self.upstream_host = upstream_host
        self.upstream_port = int(upstream_port)
        self.name = name
        self.port = 0
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._latency = {"up": 0.0, "down": 0.0}
        self._dropping = False
        self._rules: list[ResetRule] = []
        self._conns: set[_Conn] = set()
        self._next_conn = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name=f"tcp-proxy-{name}", daemon=True)
        self._restore_timer: asyncio.TimerHandle | None = None

    # ---- life -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self._kill(conn)
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):  # a leftover connection only
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    # ---- toxics (thread-safe) -------------------------------------------------------------

    def set_latency(self, *, upstream: float = 0.0, downstream: float = 0.0) -> None:
        with self._lock:
            self._latency = {"up": float(upstream), "down": float(downstream)}

    def drop(self) -> None:
        """Reset every open connection and every new one until `restore()`."""
        with self._lock:
            self._dropping = True
        self._loop.call_soon_threadsafe(self._drop_open)

    def restore(self) -> None:
        with self._lock:
            self._dropping = False

    def drop_for(self, seconds: float) -> None:
        """Drop now; connections are accepted again after `seconds`."""
        self.drop()
        deadline = time.monotonic() + seconds

        def schedule() -> None:
            if self._restore_timer is not None:
                self._restore_timer.cancel()
            self._restore_timer = self._loop.call_later(max(0.0, deadline - time.monotonic()), self.restore)

        self._loop.call_soon_threadsafe(schedule)

    @property
    def dropping(self) -> bool:
        with self._lock:
            return self._dropping

    def reset_on_reply(self, *, min_request_bytes: int = 0, marker: bytes | None = None, skip: int = 0,
                       count: int = 1, skip_handshake_exchanges: int = 0) -> ResetRule:
        """Arm the lost-reply toxic (see the module docstring for how requests are targeted)."""
        rule = ResetRule(min_request_bytes, marker, skip, count, skip_handshake_exchanges)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_toxics(self) -> None:
        with self._lock:
            self._latency = {"up": 0.0, "down": 0.0}
            self._dropping = False
            self._rules.clear()

    # ---- forwarding -----------------------------------------------------------------------

    def _drop_open(self) -> None:
        for conn in list(self._conns):
            if not conn.closed:
                self.stats.dropped += 1
                self._kill(conn)

    def _kill(self, conn: _Conn) -> None:
        conn.closed = True
        _abort(conn.client)
        if conn.upstream is not None:
            _abort(conn.upstream)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._next_conn += 1
            number = self._next_conn
            dropping = self._dropping
        self.stats.connections += 1
        conn = _Conn(number, client_writer)
        if dropping:
            self.stats.refused += 1
            _abort(client_writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), timeout=5)
        except (TimeoutError, OSError):
            _abort(client_writer)
            return
        conn.upstream = up_writer
        try:
            up_writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client_writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._conns.add(conn)
        if self.dropping:  # drop() came while the upstream connection was being opened
            self.stats.dropped += 1
            self._kill(conn)
        try:
            await asyncio.gather(
                self._pump(conn, client_reader, up_writer, "up"),
                self._pump(conn, up_reader, client_writer, "down"),
            )
        finally:
            self._conns.discard(conn)
            for writer in (client_writer, up_writer):
                if not writer.transport.is_closing():
                    writer.close()

    def _targeted(self, conn: _Conn) -> bool:
        """Called on the first reply chunk of an exchange: should this connection be reset?"""
        with self._lock:
            for rule in self._rules:
                if rule.count <= 0 or conn.exchanges <= rule.skip_handshake_exchanges:
                    continue
                if conn.request_bytes < rule.min_request_bytes:
                    continue
                if rule.marker is not None and rule.marker not in conn.request_head:
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    return False
                rule.count -= 1
                return True
        return False

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    if not conn.closed and writer.can_write_eof() and not writer.transport.is_closing():
                        try:
                            writer.write_eof()
                        except OSError:
                            pass
                    return
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if conn.closed or writer.transport.is_closing():
                    return
                writer.write(data)
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    return

        deliverer = asyncio.ensure_future(deliver())
        try:
            while not conn.closed:
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                if direction == "up":
                    if conn.last_direction == "down":
                        conn.exchanges += 1
                        conn.request_bytes = 0
                        conn.request_head.clear()
                        conn.last_direction = "up"
                    conn.request_bytes += len(data)
                    if len(conn.request_head) < MARKER_WINDOW:
                        conn.request_head += data[: MARKER_WINDOW - len(conn.request_head)]
                    self.stats.bytes_up += len(data)
                else:
                    if conn.last_direction == "up":
                        conn.last_direction = "down"
                        reset = self._targeted(conn)
                        self.stats.exchanges.append(
                            Exchange(conn.number, conn.exchanges, conn.request_bytes, time.time(), reset))
                        if reset:
                            self.stats.resets += 1
                            self._kill(conn)
                            break
                    self.stats.bytes_down += len(data)
                with self._lock:
                    latency = self._latency[direction]
                queue.put_nowait((loop.time() + latency, data))
        finally:
            queue.put_nowait(None)
            try:
                await asyncio.wait_for(deliverer, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                deliverer.cancel()

    # ---- helpers for tests ----------------------------------------------------------------

    def request_sizes(self) -> list[int]:
        return [e.request_bytes for e in self.stats.exchanges]

    def describe(self) -> dict[str, Any]:
        s = self.stats
        return {"connections": s.connections, "refused": s.refused, "dropped": s.dropped, "resets": s.resets,
                "exchanges": len(s.exchanges), "bytes_up": s.bytes_up, "bytes_down": s.bytes_down}
