"""Load: N simulated users × M small jobs at once over HTTP. All complete, in fair order, memory flat after warm-up.
The suite runs a short variant (8 × 3); the full run: SD_STUDIO_LOAD_JOBS=25 pytest tests/test_server_load.py -s."""

import os
import statistics
import threading
import time

import httpx
import psutil

from server_support import SMALL, live_server, record_start_order

USERS_N = 8
JOBS = int(os.environ.get("SD_STUDIO_LOAD_JOBS", "3"))
USERS = {f"user{i}": f"pw{i}" for i in range(USERS_N)}


def test_many_users_at_once(engine):
    process = psutil.Process()
    with live_server(engine, users=USERS, admins=()) as server:
        url = server.url
        with httpx.Client(base_url=url, auth=("user0", "pw0"), timeout=120) as warm:
            for _ in range(3):
                assert warm.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200
        rss_before = process.memory_info().rss
        order, stop = [], threading.Event()
        poller = record_start_order(engine, stop, order)
        latencies, errors = [], []

        def user(name):
            with httpx.Client(base_url=url, auth=(name, USERS[name]), timeout=300) as client:
                for i in range(JOBS):
                    started = time.perf_counter()
                    response = client.post("/sdapi/v1/txt2img", json=dict(SMALL, seed=i, prompt=f"{name} {i}"))
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 200 or len(response.json()["images"]) != 1:
                        errors.append((name, response.status_code, response.text[:200]))

        began = time.perf_counter()
        threads = [threading.Thread(target=user, args=(name,)) for name in USERS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        stop.set()
        poller.join()
        rss_after = process.memory_info().rss
    assert not errors, errors[:3]
    total = USERS_N * JOBS
    assert len(latencies) == total
    # fair order: while every user still has work, nobody gets two jobs ahead of anyone else
    mine = [owner for owner, _ in order if owner in USERS]
    counts = {name: 0 for name in USERS}
    for owner in mine:
        counts[owner] += 1
        busy = [c for c in counts.values() if c < JOBS]
        if len(busy) == USERS_N:
            assert max(counts.values()) - min(counts.values()) <= 2, counts
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    growth = (rss_after - rss_before) / 2**20
    print(f"\nload: {USERS_N} users x {JOBS} jobs = {total} in {elapsed:.1f} s -> {total / elapsed:.2f} jobs/s; "
          f"latency p50 {p50:.2f} s, p95 {p95:.2f} s; RSS {rss_before / 2**20:.0f} MiB -> {rss_after / 2**20:.0f} MiB ({growth:+.0f} MiB)")
    assert growth < 150
