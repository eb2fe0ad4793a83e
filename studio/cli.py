"""`python -m studio generate ...`: render without a browser; prints the paths of the PNGs written, one per line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import FOLDERS, StudioParser, add_engine_arguments, settings_from_args


def _parser() -> argparse.ArgumentParser:
    parser = StudioParser(prog="python -m studio", description="SD Studio from the command line. The web UI: python app.py")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND",
                                help="what to do; python -m studio COMMAND --help lists its flags")
    gen = sub.add_parser(
        "generate",
        help="render images (text to image, image to image, inpainting)",
        description="Render images without a browser; prints the paths of the PNGs written, one per line.",
    )
    gen.add_argument("-v", "--verbose", action="store_true", help="turn on progress and info logging (default: warnings only)")

    g = gen.add_argument_group("prompt")
    g.add_argument("--prompt", required=True, metavar="TEXT", help="what to draw (required)")
    g.add_argument("--negative-prompt", default="", metavar="TEXT", help="what to avoid (default: empty)")
    g.add_argument("--styles", action="append", default=[], metavar="NAME",
                   help="a style from --styles-file, applied to the prompts; repeat for several (default: none)")

    g = gen.add_argument_group("sampling")
    g.add_argument("--sampler", default="Euler a", metavar="NAME", help="A1111 name, e.g. 'DPM++ 2M Karras', or alias, e.g. k_dpmpp_2m_ka")
    g.add_argument("--scheduler", default=None, metavar="TYPE",
                   help="A1111's schedule type: Karras, Exponential, SGM Uniform, ... (default: the sampler's own)")
    g.add_argument("--steps", type=int, default=20, metavar="N", help="sampling steps")
    g.add_argument("--cfg-scale", type=float, default=7.0, metavar="X", help="classifier-free guidance: how closely to follow the prompt")
    g.add_argument("--seed", type=int, default=-1, metavar="N",
                   help="image i of a batch uses seed+i (default: -1, random; the seed used is reported)")
    g.add_argument("--subseed", type=int, default=-1, metavar="N", help="variation seed; image i uses subseed+i (default: -1, random)")
    g.add_argument("--subseed-strength", type=float, default=0.0, metavar="X", help="how far towards the variation seed's noise, 0..1")
    g.add_argument("--clip-skip", type=int, default=1, metavar="N", help="stop the text encoder N-1 layers early (A1111's Clip skip)")

    g = gen.add_argument_group("image")
    g.add_argument("--width", type=int, default=None, metavar="PX", help="a multiple of 8 (default: the model's size, or the input image's)")
    g.add_argument("--height", type=int, default=None, metavar="PX", help="a multiple of 8 (default: the model's size, or the input image's)")
    g.add_argument("--batch-size", type=int, default=1, metavar="N", help="images per sampling run")
    g.add_argument("--batch-count", type=int, default=1, metavar="N", help="sampling runs, one after the other")
    g.add_argument("--vae", default=None, metavar="FILE", help="a VAE file's name in --vae-dir (default: the model's own)")
    g.add_argument("--tiling", action="store_true", help="turn on seamless tiling: the image tiles with itself")
    g.add_argument("--restore-faces", nargs="?", const="", default=None, metavar="GFPGAN|CodeFormer",
                   help="turn on face restoration with the restorer named, or alone with the first installed in "
                        "--gfpgan-models-path / --codeformer-models-path (default: off)")
    g.add_argument("--codeformer-weight", type=float, default=0.5, metavar="X", help="CodeFormer's fidelity, 0..1 (0: most restored)")

    g = gen.add_argument_group("image to image and inpainting")
    g.add_argument("--init-image", type=Path, default=None, metavar="FILE", help="the image to start from (default: none, text to image)")
    g.add_argument("--denoising-strength", type=float, default=0.75, metavar="X", help="how much of --init-image is redrawn, 0..1")
    g.add_argument("--mask", type=Path, default=None, metavar="FILE",
                   help="inpainting mask, white = repaint; needs --init-image (default: none, the whole image)")
    g.add_argument("--mask-blur", type=int, default=4, metavar="PX", help="pixels of blur at the mask's edge")

    g = gen.add_argument_group("hires fix (text to image)")
    g.add_argument("--hires", action="store_true", help="turn on A1111's hires fix: draw at --width x --height, upscale, then redraw details")
    g.add_argument("--hr-scale", type=float, default=2.0, metavar="X", help="the upscale factor")
    g.add_argument("--hr-upscaler", default="Latent", metavar="NAME", help="Latent, Latent (bicubic), ..., Lanczos, Nearest, or a model in --upscaler-dir")
    g.add_argument("--hr-steps", type=int, default=0, metavar="N", help="second-pass steps (default: 0, the same as --steps)")
    g.add_argument("--hr-denoising-strength", type=float, default=0.7, metavar="X", help="how much the second pass redraws, 0..1")

    add_engine_arguments(gen, server=False)
    gen.add_argument_group(FOLDERS).add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="the outputs folder, as --outputs; wins over it (default: --outputs)")
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
        restore_faces=args.restore_faces is not None,
        face_restorer=args.restore_faces or None,
        codeformer_weight=args.codeformer_weight,
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
