"""How well the demo model follows its grammar, measured by the judge (demo_judge.py): prompts of the form
"a <colour> <shape> [<position>] on a <colour> background", one picture per seed, the studio's default sampling
(Euler a, 20 steps, CFG 7) through diffusers' own pipeline — which the studio matches pixel for pixel.

    python tests/demo_quality.py [--model models/demo] [--count 200]     prints the Markdown table for the README
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from demo_judge import quality_table, score  # noqa: E402
from studio.demo.scenes import caption, random_scene  # noqa: E402

STEPS, CFG = 20, 7.0


def quality_prompts(count: int, seed: int = 2024) -> list[str]:
    """`count` one-object prompts from the grammar (position words in most, size words in some), reproducible."""
    rng = np.random.default_rng(seed)
    prompts = []
    while len(prompts) < count:
        scene = random_scene(rng)
        if len(scene.objects) == 1:
            prompts.append(caption(scene))
    return prompts


def load_pipeline(model: Path):
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model), torch_dtype=torch.float32)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], first_seed: int = 0, batch: int = 16) -> list:
    """One 128x128 picture per prompt, prompt i with seed first_seed + i."""
    import torch

    pictures = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        generators = [torch.Generator().manual_seed(first_seed + start + i) for i in range(len(chunk))]
        pictures += pipe(chunk, num_inference_steps=STEPS, guidance_scale=CFG, generator=generators, height=128, width=128).images
    return pictures


def evaluate(pipe, count: int) -> list[dict]:
    prompts = quality_prompts(count)
    return [score(prompt, picture) for prompt, picture in zip(prompts, generate(pipe, prompts))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    results = evaluate(load_pipeline(args.model), args.count)
    print(quality_table(results))


if __name__ == "__main__":
    main()
