"""Real Celery worker processes on a Redis broker, the ledger on PostgreSQL, the sandbox over sockets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from connector.ledger import open_ledger
from connector.sandbox import deep_merge
from connector.settings import Settings, bundled_path, load_settings
from tasks.app import create_app

REDIS = "redis://127.0.0.1:6379"


class Cluster:
    """Worker processes plus a Celery client app for one test."""

    def __init__(self, config: Path, settings: Settings, tmp: Path,
                 transport_options: dict[str, Any] | None = None) -> None:
        self.config, self.settings, self.tmp = config, settings, tmp
        self.app = create_app(settings)
        self.workers: list[subprocess.Popen[bytes]] = []
        # Kombu transport options the workers add to the app's (e.g. how often they look for
        # unacknowledged messages past the visibility timeout); none: `celery -A tasks.app`.
        self.transport_options = transport_options or {}

    def start_worker(self, concurrency: int = 2, loglevel: str = "warning") -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
        env["CONNECTOR_CONFIG"] = str(self.config)
        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@%h"
        log = open(self.tmp / f"{name.split('@')[0]}.log", "wb")  # noqa: SIM115
        argv = ["worker", "-Q", "night,realtime,admin", "-c", str(concurrency), "--pool", "prefork", "-n", name,
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", loglevel]
        if self.transport_options:
            boot = ("import json, sys; from tasks.app import app; app.conf.broker_transport_options = "
                    "{**app.conf.broker_transport_options, **json.loads(sys.argv[1])}; app.worker_main(sys.argv[2:])")
            command = [sys.executable, "-c", boot, json.dumps(self.transport_options), *argv]
        else:
            command = [sys.executable, "-m", "celery", "-A", "tasks.app", *argv]
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool processes at once (a machine dying)."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def send(self, task: str, *args: Any, **kwargs: Any) -> None:
        """Send a task to the queue beat or the dispatcher would (the sweeper: admin, else night)."""
        queue = "admin" if task == "connector.sweep" else "night"
        self.app.send_task(task, args=list(args), kwargs=kwargs, queue=queue)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)

    def drain(self, timeout: float = 30) -> None:
        """Warm shutdown of the live workers (SIGTERM to each main process only): their running
        tasks finish first, so none of their requests is still in flight when the test reads
        what the emulators applied."""
        live = self.live_workers()
        for worker in live:
            os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in live:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))

    def logs(self, tail: int | None = 3000) -> str:
        """Every worker's log (the last `tail` characters of each; None: all of it)."""
        return "\n".join(p.read_text(errors="replace")[-tail if tail else 0:] for p in self.tmp.glob("w*.log"))


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []
    broker_db = random.randint(2, 15)
    redis.Redis.from_url(f"{REDIS}/{broker_db}").flushdb()

    def make(box: Any, *, transport_options: dict[str, Any] | None = None, **overrides: Any) -> Cluster:
        document = yaml.safe_load(bundled_path("settings.example.yaml").read_text())
        document = deep_merge(document, {
            "data_dir": str(tmp_path / "data"), "sandbox": {"enabled": False}, "workers": 4,
            "ledger": {"url": postgres_url},
            "limiter": {"url": f"{REDIS}/0", "prefix": f"test:{uuid.uuid4().hex[:8]}"},
            "celery": {"broker_url": f"{REDIS}/{broker_db}", "visibility_timeout_seconds": 30},
            "claim_ttl_seconds": 5,
        })
        document = deep_merge(deep_merge(document, box.overrides()), overrides)
        config = tmp_path / f"cluster-{len(made)}.yaml"
        config.write_text(yaml.safe_dump(document, allow_unicode=True))
        open_ledger(postgres_url, auto_migrate=True).engine.dispose()
        cluster = Cluster(config, load_settings(config), tmp_path, transport_options)
        made.append(cluster)
        return cluster

    yield make
    for c in made:
        c.stop()
    redis.Redis.from_url(f"{REDIS}/{broker_db}").flushdb()


def wait_for(condition: Callable[[], bool], *, timeout: float, every: float = 0.25,
             on_timeout: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s\n{on_timeout()}")
