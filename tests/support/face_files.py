"""Face restorer weights and a face to find, offline: GFPGAN (spandrel's GFPGANv1Clean, full size: 512×512 faces,
about 350 MB) and a small CodeFormer (spandrel_extra_arches' class with a narrow transformer) with random weights,
saved as .safetensors under A1111's file names; spandrel recognises them from their keys, as it does the real ones.
The face is drawn: OpenCV's frontal-face Haar cascade finds it (and finds nothing in flat or noisy pictures).

Test support only.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter


def _save(model, path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.detach().contiguous() for key, value in model.state_dict().items()}, str(path))
    return path


def write_gfpgan(folder: Path, seed: int = 0) -> Path:
    import torch

    from studio.upscalers import spandrel_module

    spandrel_module()
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    model = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                   num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return _save(model, folder / "GFPGANv1.4.safetensors")


def write_codeformer(folder: Path, seed: int = 0) -> Path:
    import torch

    from studio.upscalers import spandrel_module

    spandrel_module()
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    torch.manual_seed(seed)
    model = CodeFormer(dim_embd=64, n_head=2, n_layers=1, codebook_size=32, latent_size=256,
                       connect_list=["32", "64", "128", "256"], fix_modules=[])
    return _save(model, folder / "codeformer-v0.1.0.safetensors")


def drawn_face(size: int = 256, background=(90, 110, 140)) -> Image.Image:
    """A frontal face, drawn: skin oval, hair, brows, eyes, nose, mouth, softened like a photo. The cascade's box
    for it is about (0.16, 0.125, 0.69, 0.69) × size."""
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    s = size / 256
    draw.ellipse([70 * s, 40 * s, 186 * s, 200 * s], fill=(225, 190, 160))
    draw.rectangle([60 * s, 20 * s, 196 * s, 60 * s], fill=(60, 40, 30))
    for x in (95, 161):
        draw.ellipse([(x - 16) * s, 95 * s, (x + 16) * s, 112 * s], fill=(245, 245, 245))
        draw.ellipse([(x - 7) * s, 97 * s, (x + 7) * s, 110 * s], fill=(40, 30, 30))
        draw.rectangle([(x - 20) * s, 80 * s, (x + 18) * s, 86 * s], fill=(70, 50, 40))
    draw.polygon([(128 * s, 110 * s), (118 * s, 145 * s), (138 * s, 145 * s)], fill=(205, 165, 140))
    draw.ellipse([105 * s, 160 * s, 151 * s, 175 * s], fill=(150, 60, 60))
    return image.filter(ImageFilter.GaussianBlur(2 * s))


def settings_with_faces(outputs: Path, cache_dir: Path, face_dirs: tuple[Path, Path]):
    """A tiny-model engine's settings that read GFPGAN and CodeFormer from `face_dirs` (a test module's
    `tiny_settings`, which conftest's engine fixture builds on)."""
    from studio.config import Settings

    return Settings(model="tiny", outputs=outputs, cache_dir=cache_dir, warmup=False, gfpgan_dir=face_dirs[0],
                    codeformer_dir=face_dirs[1])
