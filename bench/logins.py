"""python -m bench.logins [--requests N] [--flood-s S] [--out FILE]

What a password-guessing flood does to everyone else: alice's latency (p50/p95 of GET /studio/api/whoami with her
session cookie) while the server is idle, then while 8 connections (another process) post wrong passwords for bob to
/login as fast as they get answers, with the ratio to idle. Three servers: the default guessing limits (5 failures
per account, 20 per address, per minute: the flood soon gets 429s that check nothing, each sent after a 1 s tarpit);
the same limits without the tarpit (429s at once: the flood becomes a flood of cheap requests); and no limits (every
guess an argon2 check, on the check thread pool: what keeps the event loop free). Accounts hold argon2 entries at the
default cost. The server is the real app (create_app; its engine is built, never started: no model is loaded).
JSON to artifacts/bench/logins-DATE.json unless --out says where. Under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

GUESSERS = 8
SCENARIOS = ("default_limits", "limits_no_tarpit", "no_limits")


def _flood(url: str, seconds: float, connections: int, results) -> None:
    """In its own process: `connections` clients posting distinct wrong passwords for bob until time is up."""
    import httpx

    counts: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def guesser(n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            i = 0
            while time.monotonic() < deadline:
                answer = client.post("/login", data={"username": "bob", "password": f"guess-{n}-{i}", "next": "/"})
                with lock:
                    counts[str(answer.status_code)] = counts.get(str(answer.status_code), 0) + 1
                i += 1

    threads = [threading.Thread(target=guesser, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(counts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn on loopback in a thread, as the tests run it."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _latencies(client, count: int, until=None) -> list[float]:
    runs = []
    for _ in range(count):
        start = time.perf_counter()
        answer = client.get("/studio/api/whoami")
        runs.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.status_code
        if until is not None and until():
            break
    return runs


def _summary(runs: list[float]) -> dict:
    ordered = sorted(runs)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3), "requests": len(ordered)}


def scenario(name: str, engine, entries: dict, limiter, requests: int, flood_s: float, state_dir: Path) -> dict:
    import gradio as gr
    import httpx

    from studio.access import Access
    from studio.service import JobService
    from studio.web.app import create_app
    from studio.web.auth import Users, verify_password

    checks = []

    def counting_verify(stored: str, password: str) -> bool:
        checks.append(1)
        return verify_password(stored, password)

    users = Users(dict(entries), limiter=limiter, verify=counting_verify)
    with gr.Blocks() as blocks:
        gr.Textbox()
    with _Server(create_app(blocks, JobService(engine, Access(engine, users)), users, state_dir=state_dir / name)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as alice:
            assert alice.post("/login", data={"username": "alice", "password": "alice-pw"}).status_code == 303
            _latencies(alice, 20)  # warm-up
            idle = _latencies(alice, requests)
            checks_before = len(checks)
            results = multiprocessing.get_context("spawn").Queue()
            flood = multiprocessing.get_context("spawn").Process(target=_flood, args=(server.url, flood_s, GUESSERS, results))
            flood.start()
            time.sleep(min(1.5, flood_s / 4))  # the guessers connect and start
            busy = _latencies(alice, requests * 10, until=lambda: not flood.is_alive())
            counts = results.get(timeout=flood_s + 60)
            flood.join(30)
    idle_s, busy_s = _summary(idle), _summary(busy)
    return {
        "limits": {"per_account": limiter.per_account, "per_address": limiter.per_address, "window_s": limiter.window_s,
                   "tarpit_s": limiter.tarpit_s},
        "idle": idle_s,
        "flood": {**busy_s, "guesses": sum(counts.values()), "answers": counts, "password_checks": len(checks) - checks_before,
                  "seconds": flood_s, "connections": GUESSERS},
        "ratio_p50": round(busy_s["p50_ms"] / idle_s["p50_ms"], 2),
        "ratio_p95": round(busy_s["p95_ms"] / idle_s["p95_ms"], 2),
    }


def run(requests: int, flood_s: float) -> dict:
    from studio.config import Settings
    from studio.engine import Engine
    from studio.outputs import OutputStore
    from studio.web.auth import LoginLimiter, hash_password

    started = time.perf_counter()
    entries = {name: hash_password(f"{name}-pw") for name in ("alice", "bob")}
    with tempfile.TemporaryDirectory(prefix="bench-logins-") as folder:
        folder = Path(folder)
        settings = Settings(model="tiny", outputs=folder / "outputs", cache_dir=folder / "cache", warmup=False)
        engine = Engine(settings, OutputStore(settings.outputs))  # never started: whoami needs no model
        results = {
            "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": multiprocessing.cpu_count()},
            "hash": entries["alice"].rsplit("$", 2)[0],
            "default_limits": scenario("default_limits", engine, entries, LoginLimiter(), requests, flood_s, folder),
            "limits_no_tarpit": scenario("limits_no_tarpit", engine, entries, LoginLimiter(tarpit_s=0), requests, flood_s, folder),
            "no_limits": scenario("no_limits", engine, entries, LoginLimiter(10**9, 10**9), requests, flood_s, folder),
        }
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def render(results: dict) -> str:
    lines = [f"alice's GET /studio/api/whoami (session cookie) while {GUESSERS} connections guess bob's password "
             f"({results['hash']}, {results['host']['cpus']} CPUs):"]
    for name in SCENARIOS:
        row = results[name]
        flood = row["flood"]
        lines.append(
            f"  {name:<17} idle p50 {row['idle']['p50_ms']:7.2f} ms p95 {row['idle']['p95_ms']:7.2f} ms | flood p50 "
            f"{flood['p50_ms']:7.2f} ms p95 {flood['p95_ms']:7.2f} ms | ratio p50 {row['ratio_p50']:5.2f} p95 "
            f"{row['ratio_p95']:5.2f} | {flood['guesses']} guesses {flood['answers']}, {flood['password_checks']} checked")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.logins", description="alice's latency under a password-guessing flood")
    p.add_argument("--requests", type=int, default=200, help="alice's timed requests while idle (more while flooded)")
    p.add_argument("--flood-s", type=float, default=5.0, help="how long each flood lasts")
    p.add_argument("--out", default=None, help="JSON results file (default artifacts/bench/logins-DATE.json)")
    args = p.parse_args(argv)
    results = run(args.requests, args.flood_s)
    out = Path(args.out) if args.out else Path("artifacts/bench") / f"logins-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(results), flush=True)
    print(f"[bench.logins] raw results: {out} ({results['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
