"""Operations under real gunicorn: metrics add up across workers, logs are JSON lines."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GunicornServer, RedisServer, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn]

HEALTHZ = {"method": "GET", "endpoint": "/healthz", "status": "200"}


def healthz_count(families) -> float:
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == "chatbot_http_requests_total" and s.labels == HEALTHZ
    )


def scrape(base_url: str) -> float:
    text = requests.get(f"{base_url}/metrics", timeout=10).text
    return healthz_count(text_string_to_metric_families(text))


def per_worker(prom_dir: Path) -> dict[int, float]:
    """healthz requests each worker recorded, read straight from its own sample file."""
    counts = {}
    for path in prom_dir.glob("counter_*.db"):
        pid = int(re.fullmatch(r"counter_(\d+)\.db", path.name).group(1))
        counts[pid] = healthz_count(MultiProcessCollector.merge([str(path)]))
    return counts


def hit_healthz(base_url: str, n: int) -> None:
    def one(_: int) -> int:
        # A fresh connection per request, so the kernel spreads them over both workers.
        return requests.get(f"{base_url}/healthz", timeout=10).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(n))) == [200] * n


def test_metrics_add_up_across_two_workers_and_survive_a_worker_crash(gunicorn_server, tmp_path):
    prom_dir = tmp_path / "prom"
    server = gunicorn_server(
        WEB_CONCURRENCY="2", GUNICORN_THREADS="2", PROMETHEUS_MULTIPROC_DIR=str(prom_dir)
    )
    sent = 0
    for _ in range(5):  # bounded: until both workers have served some
        hit_healthz(server.base_url, 100)
        sent += 100
        if sum(1 for n in per_worker(prom_dir).values() if n > 0) >= 2:
            break
    shares = per_worker(prom_dir)
    assert sum(1 for n in shares.values() if n > 0) >= 2, f"one worker served all: {shares}"
    assert sum(shares.values()) == sent
    for _ in range(6):  # whichever worker answers the scrape reports everybody's requests
        assert scrape(server.base_url) == sent

    victim = max(shares, key=shares.get)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: {int(p.stem.split("_")[1]) for p in prom_dir.glob("counter_*.db")} - set(shares),
        timeout=30,
        what="a replacement worker",
    )
    hit_healthz(server.base_url, 20)
    for _ in range(4):  # the dead worker's counts are still in the total
        assert scrape(server.base_url) == sent + 20


def test_every_line_gunicorn_and_the_app_print_is_json(gunicorn_server):
    server = gunicorn_server(WEB_CONCURRENCY="2")
    base = server.base_url
    sid = requests.post(f"{base}/api/session/create", timeout=10).json()["sessionId"]
    response = requests.post(
        f"{base}/api/send-message",
        json={"question": "a private question"},
        headers={"session-id": sid, "X-Request-ID": "gunicorn-test-1"},
        timeout=10,
    )
    assert response.headers["X-Request-ID"] == "gunicorn-test-1"
    requests.get(f"{base}/api/session/{sid}/history", timeout=10)
    server.stop()

    text = server.log_path.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    booted = [r for r in records if r["logger"] == "gunicorn.error" and "Booting" in r["message"]]
    assert len(booted) == 2  # gunicorn's own lines are JSON too
    (line,) = [r for r in records if r.get("request_id") == "gunicorn-test-1"]
    assert line["path"] == "/api/send-message" and line["status"] == 200
    assert any(r.get("path") == "/api/session/<session_id>/history" for r in records)
    assert sid not in text and "a private question" not in text


def test_readyz_follows_redis_under_gunicorn(tmp_path):
    redis_server = RedisServer(tmp_path / "redis").start()
    server = GunicornServer({"REDIS_URL": redis_server.url, "READINESS_TIMEOUT": "0.5"}, tmp_path)
    try:
        server.start()
        assert requests.get(f"{server.base_url}/readyz", timeout=5).status_code == 200
        redis_server.kill()
        started = time.monotonic()
        response = requests.get(f"{server.base_url}/readyz", timeout=10)
        assert response.status_code == 503 and response.json()["error"] == "store_unavailable"
        assert time.monotonic() - started < 3
        assert requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
        redis_server.stop()
