"""`python -m studio generate ...`: render without a browser; prints the paths of the PNGs written, one per line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import add_engine_arguments, settings_from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description="SD Studio from the command line. The web UI: python app.py")
    sub = parser.add_subparsers(dest="command", required=True, metavar="generate")
    gen = sub.add_parser(
        "generate",
        help="render images (text to image, image to image, inpainting)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Render images without a browser; prints the paths of the PNGs written, one per line.",
    )
    add_engine_arguments(gen)
    gen.add_argument("--prompt", required=True, help="what to draw")
    gen.add_argument("--negative-prompt", default="", help="what to avoid")
    gen.add_argument("--seed", type=int, default=-1, help="-1: random (the seed used is reported); image i of a batch uses seed+i")
    gen.add_argument("--steps", type=int, default=20, help="sampling steps")
    gen.add_argument("--cfg-scale", type=float, default=7.0, help="classifier-free guidance: how closely to follow the prompt")
    gen.add_argument("--sampler", default="Euler a", help="A1111 name, e.g. 'DPM++ 2M Karras', or alias, e.g. k_dpmpp_2m_ka")
    gen.add_argument("--width", type=int, default=None, help="multiple of 8 (default: the model's size, or the input image's)")
    gen.add_argument("--height", type=int, default=None, help="multiple of 8 (default: the model's size, or the input image's)")
    gen.add_argument("--batch-size", type=int, default=1, help="images per sampling run")
    gen.add_argument("--batch-count", type=int, default=1, help="sampling runs")
    gen.add_argument("--init-image", type=Path, default=None, help="image to start from (image to image)")
    gen.add_argument("--denoising-strength", type=float, default=0.75)
    gen.add_argument("--mask", type=Path, default=None, help="inpainting mask: white = repaint (needs --init-image)")
    gen.add_argument("--mask-blur", type=int, default=4, help="pixels of blur at the mask's edge")
    gen.add_argument("--styles", action="append", default=[], metavar="NAME", help="a style from --styles-file, applied to the prompts (repeat for several)")
    gen.add_argument("--clip-skip", type=int, default=1, metavar="N", help="stop the text encoder N-1 layers early (A1111's Clip skip; default 1)")
    gen.add_argument("--vae", default=None, metavar="FILE", help="a VAE file's name in --vae-dir (default: the model's own)")
    gen.add_argument("--scheduler", default=None, metavar="TYPE", help="A1111's schedule type: Karras, Exponential, SGM Uniform, ... (default: the sampler's own)")
    gen.add_argument("--subseed", type=int, default=-1, help="variation seed (-1: random); image i uses subseed+i")
    gen.add_argument("--subseed-strength", type=float, default=0.0, help="how far towards the variation seed's noise (0..1)")
    gen.add_argument("--tiling", action="store_true", help="seamless: the image tiles with itself")
    hires = gen.add_argument_group("hires fix (text to image)")
    hires.add_argument("--hires", action="store_true", help="draw at --width x --height, upscale, then redraw details (A1111's hires fix)")
    hires.add_argument("--hr-scale", type=float, default=2.0, help="the upscale factor")
    hires.add_argument("--hr-upscaler", default="Latent", help="Latent, Latent (bicubic), ..., Lanczos, Nearest, or a model in --upscaler-dir")
    hires.add_argument("--hr-steps", type=int, default=0, help="second-pass steps (0: the same as --steps)")
    hires.add_argument("--hr-denoising-strength", type=float, default=0.7, help="how much the second pass redraws")
    gen.add_argument("--out", type=Path, default=None, help="outputs folder (same as --outputs)")
    gen.add_argument("-v", "--verbose", action="store_true")
    return parser


def _request(args, init, mask):
    """The request the command line asks for (A1111 API names)."""
    from .contract import GenerationRequest

    return GenerationRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        steps=args.steps,
        cfg_scale=args.cfg_scale,
        sampler_name=args.sampler,
        width=args.width,
        height=args.height,
        batch_size=args.batch_size,
        batch_count=args.batch_count,
        init_image=init,
        mask=mask,
        denoising_strength=args.denoising_strength,
        mask_blur=args.mask_blur,
        styles=tuple(args.styles),
        clip_skip=args.clip_skip,
        vae=args.vae,
        scheduler=args.scheduler,
        subseed=args.subseed,
        subseed_strength=args.subseed_strength,
        tiling=args.tiling,
        enable_hr=args.hires,
        hr_scale=args.hr_scale,
        hr_upscaler=args.hr_upscaler,
        hr_second_pass_steps=args.hr_steps,
        hr_denoising_strength=args.hr_denoising_strength,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.out is not None:
        args.outputs = args.out
    settings = settings_from_args(args)
    # Imported here so `--help` is instant and argument errors come before loading torch.
    from .checkpoints import ModelError
    from .engine import Engine
    from .outputs import OutputStore
    from .contract import LOCAL_USER, Failed, RequestError
    from .service import JobService
    from .validation import decode_image

    try:
        init = decode_image(args.init_image.read_bytes(), f"--init-image {args.init_image}", settings) if args.init_image else None
        mask = decode_image(args.mask.read_bytes(), f"--mask {args.mask}", settings) if args.mask else None
        if mask is not None and init is None:
            raise RequestError("--mask needs --init-image (the image to inpaint).")
    except OSError as exc:
        print(f"error: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except RequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    request = _request(args, init, mask)
    engine = None
    try:
        from .validation import validate

        validate(request, settings)  # before loading any model
        engine = Engine(settings.__class__(**{**settings.__dict__, "warmup": False}), OutputStore(settings.outputs)).start()
        service = JobService.for_operator(engine)  # the operator, at their own shell: any model may be named
        notice = service.info().notice
        if notice:
            print(f"note: {notice}", file=sys.stderr)
        job = service.submit(request, LOCAL_USER)
        result = job.wait()
    except (RequestError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if engine is not None:
            engine.stop()
    if isinstance(result, Failed):
        print(f"error: {result.message}", file=sys.stderr)
        return 1
    for note in job.started.notes if job.started else []:
        print(f"note: {note}", file=sys.stderr)
    if job.started:
        print(f"seed: {job.started.seeds[0]}", file=sys.stderr)
    for image in result.images:
        print(image.path)
    return 0
