"""The family registry (studio/families.py): every family complete, detection right, and the registry the only
place that names a family, so adding one is one entry plus its config folders."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import MappingProxyType, SimpleNamespace

import pytest
import torch

from studio import families
from studio.checkpoints import MODELS_ROOT, ModelError, detect_family

from studio.families import FAMILIES, PIPELINE_TASKS, ConfigFolder, Family, FileFamily, detect_checkpoint, family, family_of_pipeline

CONFIGS = MODELS_ROOT / "configs"
STUDIO = Path(__file__).resolve().parent.parent / "studio"
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
V2_ATTN = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
XL_BASE = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
XL_REFINER = "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"


def _shapes(**keys):
    return {key: SimpleNamespace(shape=shape) for key, shape in keys.items()}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_has_every_field(name):
    import diffusers

    fam = family(name)
    assert fam.name == name and fam.label
    optional = {"taesd_id", "configs"} if name == "demo" else set()  # the demo model: no TAESD, a folder only
    for field in dataclasses.fields(Family):
        value = getattr(fam, field.name)
        assert field.name in optional or (value is not None and value != "" and value != ()), field.name
    for task in PIPELINE_TASKS:
        assert isinstance(getattr(diffusers, fam.pipelines.for_task(task)), type), task
    assert fam.default_size % 64 == 0
    assert len(fam.latent_rgb_factors) == 4 and all(len(row) == 3 for row in fam.latent_rgb_factors)
    assert len(fam.latent_rgb_bias) == 3
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", fam.taesd_id) or "taesd_id" in optional
    assert (fam.configs or "configs" in optional) and all(isinstance(config, ConfigFolder) and config.checkpoint_type for config in fam.configs)
    assert callable(fam.is_pipeline)


def test_families_are_immutable():
    with pytest.raises(TypeError):
        FAMILIES["new"] = FAMILIES["sd1"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAMILIES["sd1"].default_size = 1  # type: ignore[misc]


def test_unknown_family_names_the_known_ones():
    with pytest.raises(KeyError, match="sd1"):
        family("sd9")


@pytest.mark.parametrize("name", [name for name, fam in FAMILIES.items() if fam.configs])  # single-file kinds
def test_config_folders_exist_and_load_the_family(name):
    fam = family(name)
    for config in fam.configs:
        index = json.loads((CONFIGS / config.name / "model_index.json").read_text())
        assert index["_class_name"] in {fam.pipelines.for_task(task) for task in PIPELINE_TASKS}, config.name
        assert config.openclip_tokenizers <= set(index), config.name
    base = json.loads((CONFIGS / fam.base_config / "model_index.json").read_text())
    assert base["_class_name"] == fam.pipelines.txt2img


def test_every_shipped_config_folder_belongs_to_a_family():
    shipped = {path.name for path in CONFIGS.iterdir() if path.is_dir()}
    registered = [config.name for fam in FAMILIES.values() for config in fam.configs]
    assert sorted(registered) == sorted(shipped)


def test_prediction_override_differs_from_its_config():
    for fam in FAMILIES.values():
        for config in fam.configs:
            if config.prediction_override:
                scheduler = json.loads((CONFIGS / config.name / "scheduler" / "scheduler_config.json").read_text())
                assert scheduler.get("prediction_type", "epsilon") != config.prediction_override.prediction_type


@pytest.mark.parametrize(
    "checkpoint_type, shapes, file_name, expected",
    [
        ("v1", _shapes(**{CONV_IN: (320, 4, 3, 3)}), "v1-5.safetensors", FileFamily("sd1", "sd15")),
        ("v1", _shapes(**{CONV_IN: (32, 4, 3, 3)}), "tiny.safetensors", FileFamily("sd1", "tiny")),
        ("inpainting", _shapes(**{CONV_IN: (320, 9, 3, 3)}), "v1-5-inpainting.safetensors", FileFamily("sd1", "sd15-inpainting")),
        ("v2", _shapes(**{CONV_IN: (320, 4, 3, 3)}), "v2-1_768-ema.safetensors", FileFamily("sd2", "sd21")),
        ("v2", _shapes(**{CONV_IN: (320, 4, 3, 3)}), "v2-1_512-BASE.safetensors", FileFamily("sd2", "sd21", "epsilon", "SD 2.x 'base' checkpoint, epsilon prediction", 512)),
        ("xl_base", _shapes(**{CONV_IN: (320, 4, 3, 3)}), "sd_xl_base_1.0.safetensors", FileFamily("sdxl", "sdxl")),
        ("xl_refiner", _shapes(**{CONV_IN: (384, 4, 3, 3)}), "sd_xl_refiner_1.0.safetensors", None),
    ],
)
def test_detect_checkpoint_from_diffusers_type(checkpoint_type, shapes, file_name, expected):
    assert detect_checkpoint(checkpoint_type, shapes, file_name) == expected


@pytest.mark.parametrize(
    "file_name, keys, family_name, config",
    [
        ("v1-5.safetensors", {CONV_IN: (320, 4, 3, 3)}, "sd1", "sd15"),
        ("tiny.safetensors", {CONV_IN: (32, 4, 3, 3)}, "sd1", "tiny"),
        ("v1-5-inpainting.safetensors", {CONV_IN: (320, 9, 3, 3)}, "sd1", "sd15-inpainting"),
        ("v2-1_768-ema.safetensors", {CONV_IN: (320, 4, 3, 3), V2_ATTN: (320, 1024)}, "sd2", "sd21"),
        ("sd_xl_base_1.0.safetensors", {CONV_IN: (320, 4, 3, 3), XL_BASE: (1280,)}, "sdxl", "sdxl"),
    ],
)
def test_detect_family_from_checkpoint_keys(file_name, keys, family_name, config):
    found = detect_family(Path(file_name), _shapes(**keys))
    assert (found.family, found.config) == (family_name, config)
    assert found.family in FAMILIES


def test_unsupported_checkpoint_names_every_supported_family():
    with pytest.raises(ModelError) as caught:
        detect_family(Path("refiner.safetensors"), _shapes(**{CONV_IN: (384, 4, 3, 3), XL_REFINER: (1280,)}))
    assert "xl_refiner" in str(caught.value)
    assert all(fam.label in str(caught.value) for fam in FAMILIES.values() if fam.configs)  # the checkpoint kinds


@pytest.mark.parametrize(
    "class_name, cross_attention_dim, family_name",
    [
        ("StableDiffusionPipeline", 768, "sd1"),
        ("StableDiffusionPipeline", 1024, "sd2"),
        ("StableDiffusionInpaintPipeline", 1024, "sd2"),
        ("StableDiffusionXLPipeline", 2048, "sdxl"),
        ("StableDiffusionPipeline", None, "sd1"),  # no cross_attention_dim in the UNet config: as before, SD 1.x
        ("StableDiffusionPipeline", 32, "sd1"),  # a tiny folder model
    ],
)
def test_family_of_a_loaded_pipeline(class_name, cross_attention_dim, family_name):
    assert family_of_pipeline(class_name, cross_attention_dim).name == family_name


def test_no_other_studio_module_names_a_family():
    """The point of the registry: family names and their config folders appear in families.py only."""
    names = set(FAMILIES) | {config.name for fam in FAMILIES.values() for config in fam.configs}
    quoted = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, sorted(names))))
    offenders = [
        f"{path.relative_to(STUDIO)}:{number}"
        for path in sorted(STUDIO.rglob("*.py"))
        if path.name != "families.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if quoted.search(line)
    ]
    assert offenders == []


# ---- adding a family is one entry: a made-up family added to the registry alone reaches every consumer


@pytest.fixture
def toy_family(monkeypatch):
    toy = Family(
        name="toy",
        label="Toy",
        pipelines=FAMILIES["sdxl"].pipelines,
        default_size=640,
        latent_rgb_factors=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0)),
        latent_rgb_bias=(0.5, 0.25, 0.0),
        taesd_id="someone/taesd-toy",
        configs=(ConfigFolder("toy-config", "toy_type", openclip_tokenizers=frozenset({"tokenizer"})),),
        is_pipeline=lambda class_name, cross: cross == 4096,
    )
    monkeypatch.setattr(families, "FAMILIES", MappingProxyType({**FAMILIES, "toy": toy}))
    return toy


def test_a_new_family_entry_reaches_every_consumer(toy_family, monkeypatch):
    import diffusers

    from studio import checkpoints, previews
    from studio.pipelines import pipeline_class

    assert families.family("toy") is toy_family
    for task in PIPELINE_TASKS:
        assert pipeline_class("toy", task) is getattr(diffusers, toy_family.pipelines.for_task(task))
    assert detect_checkpoint("toy_type", {}, "toy.safetensors") == FileFamily("toy", "toy-config")
    assert checkpoints._family_of_pipeline(SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(cross_attention_dim=4096)))) == "toy"
    assert families.config_folder("toy-config").openclip_tokenizers == {"tokenizer"}
    assert "Toy" in families.supported_labels()

    decoder = previews.PreviewDecoder("latent", "toy", None, torch.device("cpu"), torch.float32)
    latents = torch.zeros(1, 4, 2, 2)
    latents[0, 0] = 0.5  # channel 0 is red in the toy projection
    picture = decoder.picture(latents)
    assert picture.shape == (2, 2, 3)
    assert picture[0, 0].tolist() == [int((1.0 + 1) * 127.5), int((0.25 + 1) * 127.5), int((0.0 + 1) * 127.5)]

    asked = []
    monkeypatch.setattr(diffusers.AutoencoderTiny, "from_pretrained", lambda repo, **kwargs: asked.append(repo) or "taesd")
    assert previews.load_taesd("toy") == "taesd" and asked == ["someone/taesd-toy"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_latent_previews_use_the_family_projection(name):
    from studio.previews import PreviewDecoder

    fam = family(name)
    decoder = PreviewDecoder("latent", name, None, torch.device("cpu"), torch.float32)
    latents = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    expected = torch.einsum("chw,cr->hwr", latents[0], torch.tensor(fam.latent_rgb_factors)) + torch.tensor(fam.latent_rgb_bias)
    assert torch.equal(decoder.picture(latents), ((expected.clamp(-1, 1) + 1) * 127.5).to(torch.uint8))
