"""LoRA: A1111/kohya files from the LoRA folder applied per job through diffusers' loaders, on the tiny SD1 model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from studio.loras import LoraApplier, LoraError, LoraLibrary
from tests.support.lora_files import lora_tensors, write_kohya_lora


def _build(studio_cache):
    from studio import tiny
    from studio.checkpoints import materialize_config

    return tiny.build_tiny_pipeline(materialize_config("tiny", studio_cache) / "tokenizer")


def image(pipe, seed=1, **kwargs):
    out = pipe("a red cat", num_inference_steps=2, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(seed), **kwargs)
    return out.images[0]


def maxdiff(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@pytest.fixture(scope="module")
def pipe(studio_cache):
    return _build(studio_cache)


@pytest.fixture(scope="module")
def ref(studio_cache):
    """A second pipe driven by diffusers' own API only: the reference the studio must match."""
    return _build(studio_cache)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, pipe):
    root = tmp_path_factory.mktemp("Lora")
    write_kohya_lora(pipe, root / "alpha.safetensors", seed=1, metadata={"ss_output_name": "alpha_v2"})
    write_kohya_lora(pipe, root / "alpha_ldm.safetensors", seed=1, style="ldm")  # same weights, LDM block names
    write_kohya_lora(pipe, root / "styles" / "beta.safetensors", seed=2, rank=8)
    write_kohya_lora(pipe, root / "gamma.safetensors", seed=3, text_encoder=False)
    write_kohya_lora(pipe, root / "xl.safetensors", seed=4, te_prefixes=("lora_te1_", "lora_te2_"))
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    (root / "alpha.preview.png").write_bytes(b"png")
    return root


@pytest.fixture(scope="module")
def library(folder):
    return LoraLibrary(folder)


@pytest.fixture(scope="module")
def plain(pipe):
    return image(pipe)


@pytest.fixture
def applier(library, pipe):
    applier = LoraApplier(library)
    yield applier
    applier.deactivate(pipe)


def reference_image(ref, files, weights):
    """diffusers' own load_lora_weights + set_adapters on the reference pipe."""
    names = []
    for f in files:
        name = f.stem
        if name not in {n for ns in ref.get_list_adapters().values() for n in ns}:
            ref.load_lora_weights(str(f), adapter_name=name)
        names.append(name)
    ref.set_adapters(names, adapter_weights=weights)
    ref.enable_lora()
    try:
        return image(ref)
    finally:
        ref.disable_lora()


def test_kohya_file_matches_diffusers_own_loader_and_changes_the_picture(pipe, ref, folder, applier, plain):
    applied, missing = applier.activate(pipe, [("alpha", 1.0, 1.0)])
    assert (applied, missing) == (["alpha"], [])
    ours = image(pipe)
    theirs = reference_image(ref, [folder / "alpha.safetensors"], [1.0])
    assert maxdiff(ours, theirs) == 0.0
    assert maxdiff(ours, plain) > 0.05  # the LoRA really does something


def test_ldm_block_names_load_like_diffusers_names(pipe, applier):
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    a = image(pipe)
    applier.activate(pipe, [("alpha_ldm", 1.0, 1.0)])
    assert maxdiff(image(pipe), a) == 0.0


def test_deactivate_gives_back_the_plain_model_exactly(pipe, applier, plain):
    applier.activate(pipe, [("alpha", 1.0, 1.0), ("beta", 0.7, 0.7)])
    assert maxdiff(image(pipe), plain) > 0.05
    applier.deactivate(pipe)
    assert maxdiff(image(pipe), plain) == 0.0


def test_two_loras_at_once(pipe, ref, folder, applier, plain):
    applied, _ = applier.activate(pipe, [("alpha", 1.0, 1.0), ("beta", 0.5, 0.5)])
    assert applied == ["alpha", "beta"]
    both = image(pipe)
    theirs = reference_image(ref, [folder / "alpha.safetensors", folder / "styles" / "beta.safetensors"], [1.0, 0.5])
    assert maxdiff(both, theirs) == 0.0
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    assert maxdiff(both, image(pipe)) > 0.01


def test_te_and_unet_multipliers_apply_separately(pipe, ref, folder, applier, plain):
    f = [folder / "alpha.safetensors"]
    applier.activate(pipe, [("alpha", 0.0, 1.0)])
    unet_only = image(pipe)
    assert maxdiff(unet_only, reference_image(ref, f, [{"unet": 1.0, "text_encoder": 0.0}])) == 0.0
    applier.activate(pipe, [("alpha", 1.0, 0.0)])
    te_only = image(pipe)
    assert maxdiff(te_only, reference_image(ref, f, [{"unet": 0.0, "text_encoder": 1.0}])) == 0.0
    assert maxdiff(unet_only, plain) > 0.01 and maxdiff(te_only, plain) > 0.01 and maxdiff(te_only, unet_only) > 0.01


def test_same_lora_at_new_weights_reuses_the_loaded_adapter(pipe, applier):
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    full = image(pipe)
    before = pipe.get_list_adapters()
    applier.activate(pipe, [("alpha", 0.3, 0.3)])
    assert maxdiff(image(pipe), full) > 0.01
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    assert maxdiff(image(pipe), full) == 0.0
    assert pipe.get_list_adapters() == before  # no reload, no new adapter


def test_alias_and_unet_only_lora(pipe, applier, plain):
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    by_name = image(pipe)
    applied, missing = applier.activate(pipe, [("alpha_v2", 1.0, 1.0)])  # ss_output_name
    assert (applied, missing) == (["alpha_v2"], [])
    assert maxdiff(image(pipe), by_name) == 0.0
    applier.activate(pipe, [("gamma", 1.0, 1.0)])  # no text-encoder layers at all
    assert maxdiff(image(pipe), plain) > 0.01


def test_missing_name_is_reported_and_the_job_goes_on(pipe, applier, plain):
    applied, missing = applier.activate(pipe, [("no_such_lora", 1.0, 1.0)])
    assert (applied, missing) == ([], ["no_such_lora"])
    assert maxdiff(image(pipe), plain) == 0.0
    applied, missing = applier.activate(pipe, [("beta", 1.0, 1.0), ("nope", 1.0, 1.0)])
    assert (applied, missing) == (["beta"], ["nope"])


def test_broken_file_raises_a_lora_error_naming_the_file_only(pipe, applier, folder, plain):
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    with pytest.raises(LoraError) as err:
        applier.activate(pipe, [("alpha", 1.0, 1.0), ("broken", 1.0, 1.0)])
    message = str(err.value)
    assert "broken.safetensors" in message and str(folder) not in message and "/" not in message
    assert maxdiff(image(pipe), plain) == 0.0  # left plain, not half-applied


def test_sdxl_lora_on_an_sd1_model_says_so(pipe, applier):
    with pytest.raises(LoraError, match="SDXL") as err:
        applier.activate(pipe, [("xl", 1.0, 1.0)])
    assert "xl.safetensors" in str(err.value)


def test_mismatched_layers_are_refused(pipe, applier, tmp_path):
    from safetensors.torch import save_file

    tensors = lora_tensors(pipe, seed=5)
    key = next(k for k in tensors if k.endswith("lora_down.weight") and k.startswith("lora_unet_"))
    tensors[key] = torch.randn(tensors[key].shape[0], tensors[key].shape[1] * 2)  # another architecture's width
    save_file(tensors, str(tmp_path / "other.safetensors"))
    applier = LoraApplier(LoraLibrary(tmp_path))
    with pytest.raises(LoraError, match="does not fit"):
        applier.activate(pipe, [("other", 1.0, 1.0)])
    assert not any("other" in n for ns in pipe.get_list_adapters().values() for n in ns)


def test_from_pipe_siblings_share_the_activation(pipe, applier):
    from diffusers import StableDiffusionImg2ImgPipeline

    img2img = StableDiffusionImg2ImgPipeline.from_pipe(pipe)
    init = np.full((64, 64, 3), 0.5, dtype=np.float32)[None]

    def i2i():
        return image(img2img, image=torch.from_numpy(init).permute(0, 3, 1, 2), strength=0.9)

    plain_i2i = i2i()
    applier.activate(pipe, [("beta", 1.0, 1.0)])
    lora_i2i = i2i()
    assert maxdiff(lora_i2i, plain_i2i) > 0.01
    applier.activate(img2img, [("beta", 1.0, 1.0)])  # the adapter the txt2img pipe loaded: no reload
    assert maxdiff(i2i(), lora_i2i) == 0.0
    applier.deactivate(img2img)
    assert maxdiff(i2i(), plain_i2i) == 0.0


def test_loaded_adapters_are_bounded_least_recently_used_first(pipe, library):
    applier = LoraApplier(library, max_adapters=2)
    mine = lambda: {n for ns in pipe.get_list_adapters().values() for n in ns}  # noqa: E731
    before = mine()
    applier.activate(pipe, [("alpha", 1.0, 1.0)])
    applier.activate(pipe, [("beta", 1.0, 1.0)])
    applier.activate(pipe, [("alpha", 1.0, 1.0)])  # alpha now most recent
    applier.activate(pipe, [("gamma", 1.0, 1.0)])  # evicts beta
    assert len(applier._loaded[pipe.unet]) == 2
    assert not any(n.startswith("lora_beta_") for n in mine())  # deleted from the model, not only forgotten
    assert len(mine() - before) <= 2
    assert any(n.startswith("lora_alpha_") for n in applier._loaded[pipe.unet])
    assert any(n.startswith("lora_gamma_") for n in applier._loaded[pipe.unet])
    applier.deactivate(pipe)


def test_library_names_aliases_previews_and_listing(library, folder):
    names = sorted(e.name for e in library.entries())
    assert names == ["alpha", "alpha_ldm", "beta", "broken", "gamma", "xl"]  # subfolders included, by file name
    alpha = library.find("alpha")
    assert alpha.alias == "alpha_v2" and library.find("alpha_v2") is alpha
    assert alpha.preview == folder / "alpha.preview.png"
    assert library.find("beta").path == folder / "styles" / "beta.safetensors"
    listing = library.listing()
    assert {d["name"] for d in listing} == set(names)
    assert all(set(d) == {"name", "alias", "path", "metadata"} and d["path"] == d["name"] for d in listing)
    assert str(folder) not in json.dumps(listing)
    assert library.find("missing") is None


def test_duplicate_aliases_resolve_by_file_name_only(tmp_path, pipe):
    for stem in ("one", "two"):
        write_kohya_lora(pipe, tmp_path / f"{stem}.safetensors", unet=False, metadata={"ss_output_name": "same"})
    lib = LoraLibrary(tmp_path)
    assert lib.find("same") is None  # ambiguous alias: A1111 forbids it
    assert lib.find("one").name == "one"


def test_short_hash_is_a1111s_addnet_hash(library, folder, tmp_path, pipe):
    path = folder / "alpha.safetensors"
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    expected = hashlib.sha256(data[8 + header:]).hexdigest()[:12]
    assert library.short_hash("alpha") == expected
    assert library.short_hash("alpha_v2") == expected
    assert library.short_hash("missing") is None
    # kohya's sshs_model_hash in the metadata is taken as is (A1111 prefers it)
    write_kohya_lora(pipe, tmp_path / "k.safetensors", unet=False, metadata={"sshs_model_hash": "ab" * 32})
    assert LoraLibrary(tmp_path).short_hash("k") == "ab" * 6


def test_no_folder_means_no_loras(pipe, plain):
    applier = LoraApplier(LoraLibrary(None))
    assert applier.library.entries() == [] and applier.library.listing() == []
    assert applier.activate(pipe, [("alpha", 1.0, 1.0)]) == ([], ["alpha"])
