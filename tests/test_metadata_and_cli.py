"""Saved PNGs carry A1111-compatible parameters; the CLI prints what it wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from studio.metadata import build_infotext, parse_infotext, read_infotext
from studio.outputs import OutputStore
from studio.contract import GenerationRequest

# A1111's parser regex (modules/infotext_utils.py): the parameters line must give at least 3 matches.
A1111_PARAM = re.compile(r"\s*(\w[\w \-/]+):\s*(\"(?:\\.|[^\\\"])+\"|[^,]*)(?:,|$)")
ROOT = Path(__file__).resolve().parent.parent


def test_saved_png_has_a1111_parameters(engine):
    result = engine.generate(GenerationRequest("a cat, oil painting", negative_prompt="ugly", seed=42, steps=3, cfg_scale=6.5, sampler_name="DPM++ 2M Karras", width=64, height=64))
    image = Image.open(result.images[0].path)
    text = read_infotext(image)
    assert text == result.images[0].infotext
    lines = text.split("\n")
    assert lines[0] == "a cat, oil painting" and lines[1] == "Negative prompt: ugly"
    assert len(A1111_PARAM.findall(lines[-1])) >= 3
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "a cat, oil painting"
    assert (parsed["Steps"], parsed["Sampler"], parsed["Schedule type"], parsed["CFG scale"], parsed["Seed"]) == ("3", "DPM++ 2M", "Karras", "6.5", "42")
    assert (parsed["Size-1"], parsed["Size-2"]) == ("64", "64")
    assert re.fullmatch(r"[0-9a-f]{10}", parsed["Model hash"])


def test_values_with_commas_are_quoted_and_read_back():
    text = build_infotext("p", "", {"Steps": 20, "Model": "my, model: v2", "Seed": 1})
    assert 'Model: "my, model: v2"' in text
    assert parse_infotext(text)["Model"] == "my, model: v2"


def test_atomic_write_leaves_no_partial_files(tmp_path):
    store = OutputStore(tmp_path)
    path = store.save_png(Image.new("RGB", (8, 8)), "p\nSteps: 1, Seed: 1, Size: 8x8", 1)
    second = store.save_png(Image.new("RGB", (8, 8)), "p\nSteps: 1, Seed: 2, Size: 8x8", 2)
    assert path.name == "00000-1.png" and second.name == "00001-2.png"
    assert sorted(p.name for p in path.parent.iterdir()) == ["00000-1.png", "00001-2.png"]


def test_cli_generates_offline_and_prints_paths(tmp_path):
    """With A1111's prompt syntax, a style from --styles-file and CLIP skip; a missing LoRA is a note, not an error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "out"
    (tmp_path / "styles.csv").write_text("name,prompt,negative_prompt\nink,\"{prompt}, ink drawing\",color\n")
    done = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "--model", "tiny", "--prompt", "a (boat:1.2) <lora:nowhere:0.5>", "--steps", "2",
         "--width", "64", "--height", "64", "--seed", "-1", "--batch-size", "2", "--out", str(out),
         "--styles-file", str(tmp_path / "styles.csv"), "--styles", "ink", "--clip-skip", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    paths = done.stdout.split()
    assert len(paths) == 2 and all(Path(p).is_file() and Path(p).is_relative_to(out) for p in paths)
    seed = int(re.search(r"seed: (\d+)", done.stderr).group(1))
    first = read_infotext(Image.open(paths[0]))
    assert first.startswith("a (boat:1.2) <lora:nowhere:0.5>, ink drawing\nNegative prompt: color\n")
    assert f"Seed: {seed}," in first and "Clip skip: 2" in first
    assert f"Seed: {seed + 1}," in read_infotext(Image.open(paths[1]))
    assert "note: LoRA not found" in done.stderr and "nowhere" in done.stderr


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "studio", "generate", "--model", "tiny", "--prompt", "x", "--width", "100", "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: width must be a multiple of 8, got 100."


def test_cli_flags_for_hires_variation_tiling_and_schedule_reach_the_request():
    from studio import cli

    args = cli._parser().parse_args(["generate", "--prompt", "p", "--hires", "--hr-scale", "1.5", "--hr-upscaler", "Lanczos",
                                     "--hr-steps", "7", "--hr-denoising-strength", "0.4", "--subseed", "9", "--subseed-strength",
                                     "0.3", "--tiling", "--sampler", "DPM++ 2M", "--scheduler", "Exponential"])
    request = cli._request(args, None, None)
    assert (request.enable_hr, request.hr_scale, request.hr_upscaler, request.hr_second_pass_steps, request.hr_denoising_strength) == (True, 1.5, "Lanczos", 7, 0.4)
    assert (request.subseed, request.subseed_strength, request.tiling, request.scheduler) == (9, 0.3, True, "Exponential")


def test_discard_deletes_only_the_owners_own_pictures(tmp_path):
    store = OutputStore(tmp_path / "outputs")
    alice = store.save_png(Image.new("RGB", (8, 8)), "a", 1, owner="alice")
    bob = store.save_png(Image.new("RGB", (8, 8)), "b", 2, owner="bob")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    assert not store.discard(bob, owner="alice") and bob.exists()  # another user's picture
    assert not store.discard(outside, owner="alice") and outside.exists()
    assert not store.discard(alice.parent / ".." / ".." / ".." / "secret.png", owner="alice") and outside.exists()
    assert store.discard(alice, owner="alice") and not alice.exists()
