"""studio/upscalers.py, on the CPU and offline: A1111's latent modes, the built-in picture upscalers, and ESRGAN-family
models (tiny ones with random weights, made by tests/support/esrgan_files.py) loaded through spandrel."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio import upscalers
from studio.contract import RequestError
from studio.upscalers import (LATENT_MODES, UpscalerError, UpscalerLibrary, is_latent, latent_upscale, load_model,
                              run_tiled, spandrel_module)
from tests.support.esrgan_files import compact_tensors, esrgan_tensors, write_model

ROOT = Path(__file__).resolve().parent.parent


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """models/ESRGAN with a 2x ESRGAN (and a pickled copy of a 4x one), models/RealESRGAN with a 4x Compact."""
    root = tmp_path_factory.mktemp("models")
    write_model(root / "ESRGAN" / "2x_tiny.safetensors", esrgan_tensors(scale=2))
    write_model(root / "ESRGAN" / "pickled_4x.pth", esrgan_tensors(scale=4, seed=1))
    write_model(root / "RealESRGAN" / "RealESRGAN_x4_tiny.safetensors", compact_tensors(scale=4))
    return root / "ESRGAN", root / "RealESRGAN"


@pytest.fixture(scope="module")
def library(folders):
    return UpscalerLibrary(folders)


# ---- latent modes


def test_the_latent_modes_are_a1111s():
    assert LATENT_MODES == [
        ("Latent", "bilinear", False),
        ("Latent (antialiased)", "bilinear", True),
        ("Latent (bicubic)", "bicubic", False),
        ("Latent (bicubic antialiased)", "bicubic", True),
        ("Latent (nearest)", "nearest", False),
        ("Latent (nearest-exact)", "nearest-exact", False),
    ]
    assert all(is_latent(name) for name, _, _ in LATENT_MODES)
    assert not any(is_latent(name) for name in ("None", "Lanczos", "Nearest", "latent", None))


def test_latent_upscale_gives_the_target_latent_size_in_every_mode():
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).half()
    outputs = {}
    for name, _, _ in LATENT_MODES:
        out = latent_upscale(latents, 96, 128, name)  # pixels: latents are / 8
        assert out.shape == (2, 4, 16, 12) and out.dtype == torch.float16
        outputs[name] = out.float()
    assert not torch.equal(outputs["Latent"], outputs["Latent (nearest)"])
    assert not torch.equal(outputs["Latent"], outputs["Latent (bicubic)"])
    # nearest copies latent cells: every value is one of the input's
    assert set(outputs["Latent (nearest)"].flatten().tolist()) <= set(latents.float().flatten().tolist())
    # antialiasing only changes a downscale
    smaller = latents.float()
    assert not torch.equal(latent_upscale(smaller, 32, 32, "Latent"), latent_upscale(smaller, 32, 32, "Latent (antialiased)"))


def test_an_unknown_latent_mode_is_refused():
    with pytest.raises(UpscalerError, match="Latent \\(wobbly\\)"):
        latent_upscale(torch.zeros(1, 4, 8, 8), 128, 128, "Latent (wobbly)")


# ---- built-in picture upscalers


def test_the_built_ins_come_first_in_a1111s_order(tmp_path):
    empty = UpscalerLibrary(tmp_path / "missing")
    assert empty.names() == ["None", "Lanczos", "Nearest"]
    assert empty.listing()[0] == {"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4}
    assert empty.realesrgan_listing() == [] and UpscalerLibrary(None).names() == ["None", "Lanczos", "Nearest"]


@pytest.mark.parametrize("name", ["Lanczos", "Nearest", "None"])
def test_built_ins_reach_the_exact_target(name):
    library = UpscalerLibrary(None)
    picture = _picture(64, 48)
    assert library.upscale(picture, None, 150, 100, name).size == (150, 100)
    assert library.upscale(picture, 2, None, None, name).size == (128, 96)
    # A1111's Upscaler.upscale: a scale's target is rounded down to a multiple of 8
    assert library.upscale(_picture(100, 75), 1.5, None, None, name).size == (144, 112)


def test_nearest_repeats_pixels_and_none_is_a_plain_lanczos_resize():
    library = UpscalerLibrary(None)
    picture = _picture(32, 32)
    assert np.array_equal(np.asarray(library.upscale(picture, 2, name="Nearest")),
                          np.asarray(picture.resize((64, 64), Image.Resampling.NEAREST)))
    assert np.array_equal(np.asarray(library.upscale(picture, None, 80, 48, "None")),
                          np.asarray(picture.resize((80, 48), Image.Resampling.LANCZOS)))


def test_bad_sizes_and_names_are_refused_as_request_errors():
    library = UpscalerLibrary(None)
    picture = _picture(16, 16)
    for call in (lambda: library.upscale(picture, None, None, None, "Lanczos"),
                 lambda: library.upscale(picture, 2, 64, 64, "Lanczos"),
                 lambda: library.upscale(picture, None, 64, None, "Lanczos"),
                 lambda: library.upscale(picture, float("nan"), name="Lanczos"),
                 lambda: library.upscale(picture, 0.1, name="Lanczos"),
                 lambda: library.upscale(picture, 2, name="Latent")):
        with pytest.raises(UpscalerError):
            call()
    assert issubclass(UpscalerError, RequestError)


def test_an_unknown_name_is_an_error_that_names_it(library, folders):
    with pytest.raises(UpscalerError, match="'4x-Nothing'") as caught:
        library.upscale(_picture(16, 16), 2, name="4x-Nothing")
    assert str(folders[0].parent) not in str(caught.value)


def test_check_tells_before_any_work_whether_a_name_can_be_used(library):
    for name in ("Latent (bicubic)", "None", "Lanczos", "2x_tiny", "2x_tiny.safetensors"):
        library.check(name)
    library.check("Nearest", latent=False)
    for name, latent in (("Latent", False), ("4x-Nothing", True), ("pickled_4x", True), (None, True)):
        with pytest.raises(UpscalerError):
            library.check(name, latent=latent)


# ---- ESRGAN-family models through spandrel


def test_model_files_are_listed_by_name_without_server_paths(library, folders):
    assert library.names() == ["None", "Lanczos", "Nearest", "2x_tiny", "RealESRGAN_x4_tiny"]
    entries = {entry["name"]: entry for entry in library.listing()}
    assert entries["2x_tiny"] == {"name": "2x_tiny", "model_name": "ESRGAN", "model_path": "2x_tiny.safetensors",
                                  "model_url": None, "scale": 2}
    assert entries["RealESRGAN_x4_tiny"]["scale"] == 4
    assert library.realesrgan_listing() == [{"name": "RealESRGAN_x4_tiny", "path": "RealESRGAN_x4_tiny.safetensors", "scale": 4}]
    assert str(folders[0].parent) not in repr(library.listing()) + repr(library.realesrgan_listing())


def test_an_esrgan_model_upscales_by_its_own_scale(library):
    picture = _picture(64, 64)
    out = library.upscale(picture, 2, None, None, "2x_tiny", "cpu", torch.float16)  # float32 on the CPU
    assert out.size == (128, 128) and out.mode == "RGB"
    # the same as spandrel's own call on the whole picture (one tile)
    descriptor = spandrel_module().ModelLoader().load_from_file(str(library.find("2x_tiny").path))
    expected = descriptor(torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None].float() / 255)
    expected = expected[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(np.asarray(out).astype(int) - expected.astype(int)).max() <= 1


def test_a_model_runs_again_until_the_target_then_lands_on_it_exactly(library):
    picture = _picture(32, 32)
    assert library.upscale(picture, 4, name="2x_tiny").size == (128, 128)  # two passes
    assert library.upscale(picture, 3, name="2x_tiny").size == (96, 96)  # two passes, then Lanczos down
    assert library.upscale(picture, None, 100, 72, "2x_tiny").size == (100, 72)  # hires fix: the exact size
    assert library.upscale(picture, None, 30, 30, "2x_tiny").size == (30, 30)  # no bigger: a plain resize


def test_tiles_meet_without_seams(library):
    """With as much context as the model's reach, tiled output equals the whole picture's (Compact: 4 convolutions)."""
    descriptor = load_model(library.find("RealESRGAN_x4_tiny")).eval()
    picture = _picture(70, 45, seed=3)
    whole = np.asarray(run_tiled(descriptor, picture, torch.float32, tile=0)).astype(int)
    tiled = np.asarray(run_tiled(descriptor, picture, torch.float32, tile=16, pad=8)).astype(int)
    assert tiled.shape == whole.shape == (180, 280, 3)
    assert np.abs(tiled - whole).max() <= 1


def test_models_are_loaded_once_and_at_most_two_are_kept(folders, monkeypatch):
    library = UpscalerLibrary(folders, allow_pickle=True)
    loader = spandrel_module().ModelLoader
    calls = []
    original = loader.load_from_file
    monkeypatch.setattr(loader, "load_from_file", lambda self, path: calls.append(Path(path).name) or original(self, path))
    picture = _picture(16, 16)
    threads = [threading.Thread(target=library.upscale, args=(picture, 2, None, None, "2x_tiny")) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["2x_tiny.safetensors"]
    for name in ("RealESRGAN_x4_tiny", "pickled_4x", "2x_tiny"):
        library.upscale(picture, 4, name=name)
    assert library.loaded() == ["pickled_4x", "2x_tiny"]


def test_a_pth_file_is_refused_without_allow_pickle_and_loads_with_it(library, folders):
    assert "pickled_4x" not in library.names()
    assert "--allow-pickle" in library.refused()["pickled_4x"]
    with pytest.raises(UpscalerError, match="'pickled_4x'.*--allow-pickle"):
        library.upscale(_picture(16, 16), 4, name="pickled_4x")
    trusting = UpscalerLibrary(folders, allow_pickle=True)
    assert "pickled_4x" in trusting.names() and trusting.refused() == {}
    assert trusting.upscale(_picture(16, 16), 4, name="pickled_4x").size == (64, 64)


def test_a_file_that_is_not_an_upscaler_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a safetensors header")
    write_model(tmp_path / "sub" / "other.safetensors", {"weight": torch.zeros(3, 3)})
    library = UpscalerLibrary(tmp_path)
    assert library.names() == ["None", "Lanczos", "Nearest", "junk", "other"]
    for name, file in (("junk", "junk.safetensors"), ("other", "sub/other.safetensors")):
        with pytest.raises(UpscalerError, match=f"'{name}'.*{file}") as caught:
            library.upscale(_picture(16, 16), 2, name=name)
        assert str(tmp_path) not in str(caught.value)


def test_refresh_sees_new_files_and_a_new_name_is_found_without_it(tmp_path, monkeypatch):
    library = UpscalerLibrary(tmp_path)
    assert library.names() == ["None", "Lanczos", "Nearest"]
    write_model(tmp_path / "4x_new.safetensors", compact_tensors(scale=4))
    with pytest.raises(UpscalerError, match="'4x_new' is not there"):
        library.check("4x_new")  # the folder was looked at a moment ago: not again yet
    monkeypatch.setattr(upscalers, "RESCAN_AFTER", 0.0)
    assert library.upscale(_picture(16, 16), 4, name="4x_new").size == (64, 64)  # looked again before refusing
    (tmp_path / "4x_new.safetensors").unlink()
    library.refresh()
    assert library.names() == ["None", "Lanczos", "Nearest"] and library.loaded() == []


def test_the_module_imports_no_web_framework_and_spandrel_only_when_a_model_loads():
    code = ("import sys; from studio.upscalers import UpscalerLibrary; UpscalerLibrary('models/ESRGAN').listing(); "
            "print(sorted(m for m in ('gradio', 'fastapi', 'starlette', 'uvicorn', 'spandrel', 'torchvision') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_spandrel_loads_without_leaving_a_torchvision_behind():
    spandrel_module()
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        assert "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None
