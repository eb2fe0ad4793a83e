"""python -m bench.lora_switch [--reps N] [--out FILE]

What switching LoRAs costs on the real SD 1.5 architecture (models/configs/sd15, seeded random weights, fp32, CPU):
two kohya-format LoRA files of rank 16 on every attention projection (UNet to_q/to_k/to_v/to_out.0, text encoder
q/k/v/out_proj), applied through studio.loras.LoraApplier. Timed, median of N: the first activation of A (read the
file, inject the adapter), a switch A -> B with B already loaded, a switch to none (deactivate), and one plain 1-step
256x256 denoise (text encoder + UNet with CFG, latents out) for scale,
once with switched-off adapters loaded and once before any LoRA was ever loaded. Prints a table; JSON to bench/results/DATE-cpu-lora-switch.json
unless --out says where.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from bench.models import SPECS, build_pipeline
    from studio.loras import LoraApplier, LoraLibrary
    from tests.support.lora_files import write_kohya_lora

    work = Path(tempfile.mkdtemp(prefix="lora-switch-"))
    started = time.perf_counter()
    pipe = build_pipeline(SPECS["sd15"], work / "studio-cache")
    pipe.set_progress_bar_config(disable=True)
    build_s = time.perf_counter() - started
    folder = work / "Lora"
    files = {n: write_kohya_lora(pipe, folder / f"{n}.safetensors", rank=16, alpha=16, seed=s, strength=0.1)
             for n, s in (("A", 1), ("B", 2))}
    library = LoraLibrary(folder)

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    def denoise():
        with torch.inference_mode():
            pipe("a photo", num_inference_steps=1, height=256, width=256, output_type="latent",
                 generator=torch.Generator().manual_seed(0))

    samples: dict[str, list[float]] = {"first_activation_A": [], "switch_A_to_B": [], "switch_to_none": [],
                                       "plain_denoise_1step_256": [], "plain_denoise_1step_256_never_lora": []}
    denoise()  # warm-up, untimed
    for _ in range(args.reps):  # before any adapter exists: does keeping switched-off adapters cost anything?
        samples["plain_denoise_1step_256_never_lora"].append(timed(denoise))
    for _ in range(args.reps):
        applier = LoraApplier(library)
        samples["first_activation_A"].append(timed(lambda: applier.activate(pipe, [("A", 1.0, 1.0)])))
        applier.activate(pipe, [("B", 1.0, 1.0)])  # load B once, untimed
        applier.activate(pipe, [("A", 1.0, 1.0)])
        samples["switch_A_to_B"].append(timed(lambda: applier.activate(pipe, [("B", 1.0, 1.0)])))
        samples["switch_to_none"].append(timed(lambda: applier.deactivate(pipe)))
        samples["plain_denoise_1step_256"].append(timed(denoise))
        pipe.delete_adapters([n for ns in pipe.get_list_adapters().values() for n in ns])  # next rep loads afresh

    medians = {k: round(statistics.median(v), 4) for k, v in samples.items()}
    size_mb = round(files["A"].stat().st_size / 1e6, 1)
    load = os.getloadavg()[0]
    print(f"SD1.5 architecture, random weights, CPU ({os.cpu_count()} cores); LoRA rank 16, {size_mb} MB; "
          f"median of {args.reps}; load average {load:.1f}")
    print(f"{'step':<36}{'seconds':>10}")
    for k, v in medians.items():
        print(f"{k:<36}{v:>10.3f}")
    result = {
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
                 "torch": torch.__version__, "threads": torch.get_num_threads()},
        "model": "sd15 (models/configs/sd15, random weights, fp32, cpu)",
        "lora": {"rank": 16, "alpha": 16, "targets": "unet attn to_q/to_k/to_v/to_out.0 + text encoder q/k/v/out_proj",
                 "file_mb": size_mb},
        "reps": args.reps,
        "load_average_1min_at_end": round(load, 2),  # a shared machine: other work inflates every figure
        "build_s": round(build_s, 1),
        "median_s": medians,
        "samples_s": {k: [round(x, 4) for x in v] for k, v in samples.items()},
    }
    out = args.out or Path(__file__).parent / "results" / f"{datetime.date.today().isoformat()}-cpu-lora-switch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
