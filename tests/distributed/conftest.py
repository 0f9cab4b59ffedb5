"""Real Celery worker processes on a Redis broker, the ledger on PostgreSQL, the sandbox over sockets."""

from __future__ import annotations

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

    def __init__(self, config: Path, settings: Settings, tmp: Path) -> None:
        self.config, self.settings, self.tmp = config, settings, tmp
        self.app = create_app(settings)
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_worker(self, concurrency: int = 2) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
        env["CONNECTOR_CONFIG"] = str(self.config)
        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@%h"
        log = open(self.tmp / f"{name.split('@')[0]}.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-Q", "night,realtime,admin",
             "-c", str(concurrency), "--pool", "prefork", "-n", name, "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-l", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers.append(worker)
        return worker

    def kill(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool processes at once (a machine dying)."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)

    def send(self, task: str, *args: Any, **kwargs: Any) -> None:
        self.app.send_task(task, args=list(args), kwargs=kwargs, queue="night")

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("w*.log"))


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []
    broker_db = random.randint(2, 15)
    redis.Redis.from_url(f"{REDIS}/{broker_db}").flushdb()

    def make(box: Any, **overrides: Any) -> Cluster:
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
        cluster = Cluster(config, load_settings(config), tmp_path)
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
