"""Watching costs little: the per-step time of a job watched live, against a bare diffusers call.

    python -m bench.watched              # CPU, tiny model, 256², 10 vs 50 steps, 3 alternated rounds

The studio runs as users run it (`python app.py --model tiny`, its own process, previews every step); this process
is the client. Per-step time = (median time at 50 steps − median at 10) / 40, so start-up, prompt encoding and the
final decode cancel out. Sides, alternated within each round:

- diffusers: diffusers' own StableDiffusionPipeline on the same tiny weights, in a process of its own too (the
  studio idles meanwhile), so neither side shares an interpreter with the client;
- engine: POST /studio/api/jobs, then wait for the end on the job's stream without reading its previews;
- gradio_api: the /txt2img Gradio endpoint through gradio_client, every streamed update consumed;
- browser: what the page does — the /txt2img endpoint plus the job's live stream (every preview frame decoded).

Prints a table and writes JSON to artifacts/bench/.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a lighthouse at dusk, oil painting"
SAMPLER = "Euler a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Studio:
    """`python app.py --model tiny` in its own process, on a free loopback port."""

    def __init__(self, work: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", XDG_CACHE_HOME=str(work / "xdg"))
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--model", "tiny", "--no-browser", "--port", str(self.port),
             "--outputs", str(work / "outputs"), "--preview", "latent"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/studio/api/whoami", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("the studio did not start")
            time.sleep(0.5)
        raise RuntimeError("the studio did not answer in 180 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def read_stream(url: str, path: str, decode_previews: bool) -> int:
    """Read a job's live stream to its end; returns the preview frames seen (decoded, as a browser would)."""
    frames = 0
    with httpx.Client(base_url=url, timeout=120) as http, http.stream("GET", path) as response:
        kind = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                if kind == "preview":
                    frames += 1
                    if decode_previews:
                        base64.b64decode(json.loads(line[6:])["image"].split(",", 1)[1])
                elif kind in ("finished", "failed", "cancelled"):
                    return frames
    return frames


def diffusers_worker(cache: Path) -> None:
    """`--diffusers-worker`: reads "size steps" lines, runs diffusers' own pipeline, answers the seconds taken."""
    import torch

    from studio.checkpoints import materialize_config
    from studio.pipelines import plain_scheduler
    from studio.samplers import find_sampler
    from studio.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(materialize_config("tiny", cache) / "tokenizer")
    pipe.scheduler = plain_scheduler(find_sampler(SAMPLER), dict(pipe.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    print("ready", flush=True)
    for line in sys.stdin:
        size, steps = (int(v) for v in line.split())
        started = time.perf_counter()
        pipe(PROMPT, num_inference_steps=steps, guidance_scale=7.0, width=size, height=size,
             generator=torch.Generator("cpu").manual_seed(1))
        print(time.perf_counter() - started, flush=True)


class Sides:
    def __init__(self, studio: Studio, size: int, work: Path):
        import gradio_client

        self.studio, self.size = studio, size
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "bench.watched", "--diffusers-worker", str(work / "cache")], cwd=str(ROOT),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )
        assert self.worker.stdout.readline().strip() == "ready", "the diffusers worker did not start"
        self.client = gradio_client.Client(studio.url + "/", verbose=False)
        self.http = httpx.Client(base_url=studio.url, timeout=300)
        self.frames: dict[str, list[int]] = {"engine": [], "browser": []}

    def _arguments(self, steps: int) -> dict:
        return dict(prompt=PROMPT, negative_prompt="", steps=steps, cfg_scale=7.0, seed=1, sampler_name=SAMPLER,
                    width=self.size, height=self.size, batch_size=1)

    def diffusers(self, steps: int) -> float:
        self.worker.stdin.write(f"{self.size} {steps}\n")
        self.worker.stdin.flush()
        return float(self.worker.stdout.readline())

    def close(self) -> None:
        self.worker.stdin.close()
        self.worker.wait(30)

    def engine(self, steps: int) -> float:
        started = time.perf_counter()
        job = self.http.post("/studio/api/jobs", json=self._arguments(steps)).json()["id"]
        self.frames["engine"].append(read_stream(self.studio.url, f"/studio/api/jobs/{job}/stream", decode_previews=False))
        return time.perf_counter() - started

    def gradio_api(self, steps: int) -> float:
        started = time.perf_counter()
        job = self.client.submit(api_name="/txt2img", **self._arguments(steps))
        for _update in job:
            pass
        job.result()
        return time.perf_counter() - started

    def browser(self, steps: int) -> float:
        started = time.perf_counter()
        job = self.client.submit(api_name="/txt2img", **self._arguments(steps))
        reader = None
        seen: list[int] = []
        for update in job:
            match = re.search(r"data-stream='([^']+)'", update[0] if isinstance(update[0], str) else "")
            if match and reader is None:
                reader = threading.Thread(target=lambda p=match.group(1): seen.append(read_stream(self.studio.url, p, True)))
                reader.start()
        job.result()
        if reader is not None:
            reader.join()
        self.frames["browser"].extend(seen)
        return time.perf_counter() - started


def main(argv=None) -> dict:
    if argv is None and sys.argv[1:2] == ["--diffusers-worker"]:
        diffusers_worker(Path(sys.argv[2]))
        return {}
    p = argparse.ArgumentParser(prog="python -m bench.watched")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--lo", type=int, default=10)
    p.add_argument("--hi", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sides", default="diffusers,engine,gradio_api,browser")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    sides_order = args.sides.split(",")
    with tempfile.TemporaryDirectory(prefix="studio-bench-watched-") as work:
        studio = Studio(Path(work))
        try:
            sides = Sides(studio, args.size, Path(work))
            for name in sides_order:  # warm-up: first calls pay for imports and caches
                getattr(sides, name)(2)
            times = {name: {args.lo: [], args.hi: []} for name in sides_order}
            for r in range(args.rounds):
                order = sides_order if r % 2 == 0 else sides_order[::-1]
                for steps in (args.lo, args.hi):
                    for name in order:
                        times[name][steps].append(getattr(sides, name)(steps))
            frames = sides.frames
            sides.close()
        finally:
            studio.stop()
    per_step = {name: (statistics.median(t[args.hi]) - statistics.median(t[args.lo])) / (args.hi - args.lo)
                for name, t in times.items()}
    base = per_step["diffusers"]
    report = {
        "what": "per-step time of a job watched live vs a bare diffusers call (tiny model, CPU, previews every step)",
        "size": args.size, "steps": [args.lo, args.hi], "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "seconds_per_step": per_step,
        "ratio_to_diffusers": {name: per_step[name] / base for name in sides_order},
        "preview_frames_per_job": {name: frames[name] for name in ("engine", "browser") if name in sides_order},
        "raw_seconds": {name: {str(k): v for k, v in t.items()} for name, t in times.items()},
    }
    print(f"per-step time, {args.size}² tiny model, {args.lo} vs {args.hi} steps, {args.rounds} rounds (CPU)")
    for name in sides_order:
        print(f"  {name:<11} {per_step[name] * 1000:7.2f} ms/step   {report['ratio_to_diffusers'][name]:.2f}× diffusers")
    print(f"  preview frames read per job (browser): {frames['browser']}")  # [] when not measured
    out = Path(args.out) if args.out else ROOT / "artifacts" / "bench" / f"watched-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
