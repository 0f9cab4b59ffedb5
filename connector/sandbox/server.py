"""Run an emulator's ASGI app on 127.0.0.1 in a background thread, over HTTP or HTTPS.

Every emulator shares three things from here:

* `RequestLog`: a server-side record of every request (time, method, path, status, auth header
  fingerprint), which tests read to prove what the vendor saw.
* `FaultQueue`: faults queued by a test (an HTTP status with headers and body, or a delay) that
  the next matching requests receive instead of the emulator's answer. Tests queue them in
  process or over HTTP at `POST /__sandbox/faults`; `GET /__sandbox/requests` returns the log.
* `EmulatorServer`: uvicorn on an ephemeral port, optionally with TLS from a throw-away CA.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

SANDBOX_PREFIX = "/__sandbox"


@dataclass(frozen=True)
class LoggedRequest:
    at: float
    method: str
    path: str
    query: str
    status: int
    auth_fingerprint: str
    faulted: bool
    # When the request reached the emulator (`at` is when its answer was ready): with both, tests
    # count the calls in flight and the arrivals in a vendor window from the server's side.
    started: float = 0.0


class RequestLog:
    """Thread-safe, append-only log of what the emulator received and answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, *, path_prefix: str = "", method: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [
                e
                for e in self._entries
                if e.path.startswith(path_prefix) and (method is None or e.method == method)
            ]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class Fault:
    """One injected answer. `count` requests matching `method`/`path_prefix` get it."""

    path_prefix: str = ""
    method: str | None = None
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    count: int = 1
    # "before": answer instead of the emulator; "after": let the emulator apply the request, then
    # answer with this fault (a lost reply after the vendor acted).
    when: str = "before"
    # Below 1: each matching request gets the fault with this probability (a fault rate), from a
    # seeded generator so a run can be repeated; `count` then bounds how many are injected.
    probability: float = 1.0
    seed: int = 0


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rngs: dict[int, random.Random] = {}

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    if fault.probability < 1.0:
                        rng = self._rngs.setdefault(id(fault), random.Random(fault.seed))
                        if rng.random() >= fault.probability:
                            continue
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


def fingerprint(authorization: str | None) -> str:
    """A short, non-reversible tag of the credential used, so logs can tell tokens apart."""
    if not authorization:
        return ""
    return hashlib.sha256(authorization.encode()).hexdigest()[:12]


def _fault_response(fault: Fault) -> Response:
    if isinstance(fault.body, (dict, list)) or fault.body is None:
        return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)
    return Response(str(fault.body), status_code=fault.status, headers=fault.headers)


def instrument(app: FastAPI, log: RequestLog, faults: FaultQueue) -> None:
    """Add the request log, fault injection and the /__sandbox control routes to `app`."""

    @app.middleware("http")
    async def _record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path.startswith(SANDBOX_PREFIX):
            return await call_next(request)
        started = time.time()
        fault = faults.take(request.method, path)
        if fault is not None and fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault is not None and fault.when == "before" and fault.status:
            response = _fault_response(fault)
        else:
            response = await call_next(request)
            if fault is not None and fault.when == "after":
                response = _fault_response(fault) if fault.status else response
        log.append(
            LoggedRequest(
                at=time.time(),
                method=request.method,
                path=path,
                query=request.url.query,
                status=response.status_code,
                auth_fingerprint=fingerprint(
                    request.headers.get("authorization") or request.headers.get("x-api-key")
                ),
                faulted=fault is not None and bool(fault.status),
                started=started,
            )
        )
        return response

    @app.get(f"{SANDBOX_PREFIX}/requests", include_in_schema=False)
    def _requests(path_prefix: str = "") -> list[dict[str, Any]]:
        return [asdict(e) for e in log.entries(path_prefix=path_prefix)]

    @app.post(f"{SANDBOX_PREFIX}/faults", include_in_schema=False)
    async def _add_fault(request: Request) -> dict[str, str]:
        faults.add(Fault(**json.loads(await request.body())))
        return {"status": "queued"}

    @app.delete(f"{SANDBOX_PREFIX}/faults", include_in_schema=False)
    def _clear_faults() -> dict[str, str]:
        faults.clear()
        return {"status": "cleared"}


@dataclass(frozen=True)
class TlsFiles:
    ca_bundle: Path
    cert_chain: Path
    private_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, written to `directory`."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "server-chain.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_bundle))
    cert.private_key_pem.write_to_path(str(files.private_key))
    files.cert_chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return files


class EmulatorServer:
    """uvicorn serving one app on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: FastAPI, *, tls: TlsFiles | None = None, port: int = 0) -> None:
        self.app = app
        self.tls = tls
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Answers go out at once (no Nagle delay waiting for the client's delayed ACK).
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_certfile=str(tls.cert_chain) if tls else None,
            ssl_keyfile=str(tls.private_key) if tls else None,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"emulator-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self) -> EmulatorServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sandbox emulator on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        # Do not wait for idle keep-alive connections a client left open.
        self._server.force_exit = True
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
