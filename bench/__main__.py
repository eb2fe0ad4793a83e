"""python -m bench [--quick] [--device cuda] [--models sd15,sdxl] [--out results.json]

CPU, CI-friendly:   python -m bench --quick                      (tiny model, ~1-2 minutes)
CPU, full:          python -m bench --models tiny,sd15           (adds a 1-2 step real-size SD 1.5 smoke run)
GPU:                python -m bench --device cuda                (SD 1.5 at 512², SDXL at 1024², fp16; see bench/gpu.sh)
"""

from __future__ import annotations

import argparse
import os
import tempfile


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="SD Studio engine vs diffusers: speed, previews, memory, fast mode")
    p.add_argument("--quick", action="store_true", help="tiny model only, fewer runs (CI-friendly)")
    p.add_argument("--models", default=None, help="comma-separated: tiny, sd15, sdxl (default: tiny,sd15 on CPU; sd15,sdxl on CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto: fp16 on CUDA, fp32 on CPU")
    p.add_argument("--size", type=int, default=None, help="override the image size")
    p.add_argument("--reps", type=int, default=None, help="override the alternated repetitions per figure")
    p.add_argument("--out", default=None, help="JSON results file (default bench/results/DATE-DEVICE.json)")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "sd-studio-bench"), help="random-weight model folders, outputs")
    p.add_argument("--no-fast", action="store_true", help="skip fast mode (torch.compile)")
    p.add_argument("--fast-on-cpu", action="store_true", help="also measure fast mode on a CPU (compiling takes very long there)")
    p.add_argument("--only", default=None, help="comma-separated sections to run (load and warm_up always run)")
    p.add_argument("--no-oom", action="store_true", help="skip the CUDA out-of-memory check")
    p.add_argument("--deadline", type=float, default=None, help="seconds after which no new section starts")
    return p


if __name__ == "__main__":
    from .harness import main

    main(parser().parse_args())
