"""Writes tiny Stable Diffusion 2 depth-to-image and x4 upscaler models (random weights) as diffusers folders, offline.

Test support only: the tiny model's UNet with a fifth input channel (the depth map), its VAE and text encoder, and a
small DPT depth estimator — the shape of stabilityai/stable-diffusion-2-depth at toy widths.
"""

from __future__ import annotations

from pathlib import Path


def write_tiny_depth_model(folder: Path, tokenizer_folder: Path) -> Path:
    import torch
    import transformers
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionDepth2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, DPTConfig, DPTForDepthEstimation

    from studio.tiny import recipe
    from studio.tokenizers import load_clip_tokenizer

    spec = recipe()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        unet = UNet2DConditionModel(**{**spec["unet"], "in_channels": 5})
        vae = AutoencoderKL(**spec["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text_encoder"]))
        estimator = DPTForDepthEstimation(DPTConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
            neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16, backbone_out_indices=[0, 1, 2, 3])).eval()
    # transformers without torchvision has only the Pillow image processor (the one the pipeline's signature names).
    processor_class = getattr(transformers, "DPTImageProcessorPil", None) or transformers.DPTImageProcessor
    pipe = StableDiffusionDepth2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(tokenizer_folder), unet=unet,
        scheduler=PNDMScheduler.from_config({k: v for k, v in spec["scheduler"].items() if not k.startswith("_")}),
        depth_estimator=estimator, feature_extractor=processor_class(size={"height": 32, "width": 32}, keep_aspect_ratio=False),
    )
    pipe.save_pretrained(folder)
    return folder


def write_tiny_upscaler_model(folder: Path, tokenizer_folder: Path) -> Path:
    """The x4 upscaler's shape at toy widths (its UNet takes the low-resolution picture: 7 input channels)."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.tiny import recipe
    from studio.tokenizers import load_clip_tokenizer

    spec = recipe()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        unet = UNet2DConditionModel(**{**spec["unet"], "in_channels": 7, "num_class_embeds": 1000})
        vae = AutoencoderKL(**spec["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**spec["text_encoder"]))
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=load_clip_tokenizer(tokenizer_folder), unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDPMScheduler(), max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder
