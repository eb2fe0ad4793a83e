"""A1111's "SD upscale" (img2img only): the input picture upscaled by scale_factor with an upscaler, cut into
overlapping tiles of the request's width × height, each tile redrawn by image to image (tile i with seed + i), and
the tiles blended back into one picture. batch_count (n_iter) makes that many passes, pass n from seed + n.

script_args, in A1111's order: info (its UI's note; ignored), overlap (pixels), upscaler_index (an index into the
GET /sdapi/v1/upscalers list, or a name), scale_factor. Upscaler "None" leaves the picture as it is (A1111's
behaviour: the scale factor is then not used). Answer: the upscaled picture of each pass (not the tiles)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from PIL import Image

from ..contract import GenerationRequest, RequestError, SavedImage
from .common import Arguments, Output, Plan, PlanContext, arg_info, first_image, fixed_seeds, with_params
from .grids import TileLayout, cut_tiles, join_tiles, tile_layout

TITLE = "SD upscale"
ARG_NAMES = ("info", "overlap", "upscaler_index", "scale_factor")
DEFAULTS = (None, 64, 0, 2.0)
MAX_OVERLAP, MIN_SCALE, MAX_SCALE = 1024, 1.0, 8.0
NO_UPSCALER = "None"


def _upscaler(args: Arguments, names: list[str]) -> str:
    chosen = args.raw("upscaler_index")
    if isinstance(chosen, str) and not chosen.strip().isdigit():
        match = next((name for name in names if name.lower() == chosen.strip().lower()), None)
        if match is None:
            raise RequestError(f"{TITLE}: unknown upscaler '{chosen}'. Known: {', '.join(names)}.")
        return match
    index = args.number("upscaler_index", 0, len(names) - 1, whole=True)
    return names[index]


def upscaled_size(size: tuple[int, int], scale: float, upscaler: str) -> tuple[int, int]:
    """The upscaled picture's size (studio.upscalers: each side × scale, rounded down to a multiple of 8)."""
    if upscaler == NO_UPSCALER:
        return size
    return int(size[0] * scale // 8 * 8), int(size[1] * scale // 8 * 8)


def plan(context: PlanContext, request: GenerationRequest, script_args) -> Plan:
    args = Arguments(TITLE, script_args, ARG_NAMES, DEFAULTS)
    if request.init_image is None or request.mask is not None:
        raise RequestError(f"{TITLE} upscales the img2img input image (init_images), without a mask.")
    overlap = args.number("overlap", 0, MAX_OVERLAP, whole=True)
    upscaler = _upscaler(args, context.upscaler_names())
    scale = args.number("scale_factor", MIN_SCALE, MAX_SCALE)
    tile_w, tile_h = request.width or request.init_image.width, request.height or request.init_image.height
    width, height = upscaled_size(request.init_image.size, scale, upscaler)
    if width * height > context.service.settings.max_image_pixels:
        raise RequestError(f"{TITLE}: the upscaled picture ({width}×{height}) would be over the server's "
                           f"{context.service.settings.max_image_pixels:,} pixels.")
    if tile_w > width or tile_h > height:
        raise RequestError(f"{TITLE}: the tile size (width × height: {tile_w}×{tile_h}) must fit in the upscaled "
                           f"picture ({width}×{height}); lower width and height or raise the scale factor.")
    if overlap >= min(tile_w, tile_h):
        raise RequestError(f"{TITLE}: the tile overlap ({overlap}) must be smaller than the tile ({tile_w}×{tile_h}).")
    layout = tile_layout(width, height, tile_w, tile_h, overlap)
    passes = request.batch_count
    context.check_count(layout.count * passes, f"{TITLE} ({layout.count} tiles × {passes} passes)")
    notes = [f"{TITLE} redraws one tile per job: batch size is not used."] if request.batch_size != 1 else []
    base = replace(fixed_seeds(request), batch_size=1, batch_count=1, width=tile_w, height=tile_h,
                   init_image=Image.new("RGB", (tile_w, tile_h)))  # the real tiles come in before_run
    requests = [context.check(replace(base, seed=base.seed + n + i), f"{TITLE}: ")
                for n in range(passes) for i in range(layout.count)]
    job = Upscale(request.init_image, scale, upscaler, layout, requests)
    return Plan(TITLE, requests, job.assemble, before_run=job.tiles, notes=notes, cells_are_intermediate=True)


def _flatten(image: Image.Image) -> Image.Image:
    """A1111's images.flatten: transparency onto white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass
class Upscale:
    init_image: Image.Image
    scale: float
    upscaler: str
    layout: TileLayout
    requests: list[GenerationRequest]

    def tiles(self, service, requests: list[GenerationRequest]) -> list[GenerationRequest]:
        picture = _flatten(self.init_image)
        if self.upscaler != NO_UPSCALER:
            picture = service.upscale_image(picture, self.scale, self.upscaler)
        if picture.size != (self.layout.width, self.layout.height):
            picture = picture.resize((self.layout.width, self.layout.height), Image.Resampling.LANCZOS)
        tiles = cut_tiles(picture, self.layout)
        return [replace(request, init_image=tiles[i % len(tiles)]) for i, request in enumerate(requests)]

    def assemble(self, results: list[list[SavedImage]]) -> list[Output]:
        outputs, count = [], self.layout.count
        blank = Image.new("RGB", (self.layout.tile_w, self.layout.tile_h))
        for start in range(0, len(results), count):
            done = results[start:start + count]
            if not any(done):
                continue  # interrupted before this pass
            pictures = [first_image(saved) or blank for saved in done]
            first = next(saved[0] for saved in done if saved)
            extra = {"SD upscale overlap": self.layout.overlap, "SD upscale upscaler": self.upscaler}
            request = self.requests[start]
            outputs.append(Output(with_params(first.infotext, extra), request.seed, request.prompt,
                                  request.negative_prompt, image=join_tiles(self.layout, pictures)))
        return outputs


def script_args_info(upscalers: list[str]) -> list[dict]:
    return [
        arg_info(None, "Will upscale the image by the selected scale factor; use width and height sliders to set tile size"),
        arg_info("Tile overlap", 64, 0, 256, 16),
        arg_info("Upscaler", upscalers[0] if upscalers else None, choices=upscalers),
        arg_info("Scale Factor", 2.0, 1.0, 4.0, 0.05),
    ]
