"""Face restoration: A1111's "Restore faces" (txt2img / img2img `restore_faces`) and the Extras tab's GFPGAN and
CodeFormer visibilities. Plain and thread-safe: no web, no UI; front ends reach it through the engine.

The weights are the user's: GFPGAN's (GFPGANv1.4.pth, ...) in models/GFPGAN, CodeFormer's (codeformer-v0.1.0.pth)
in models/Codeformer, A1111's folders and file names. They are loaded with spandrel (CodeFormer's architecture is in
spandrel_extra_arches, added to a registry of our own, not to spandrel's global one). Pickled .pth files are loaded
only with --allow-pickle, as upscalers are; a .safetensors conversion needs no flag.

Finding faces: A1111 finds and aligns them with facexlib's RetinaFace, which needs torchvision (it would replace this
torch build) and downloads its weights at first use. Here OpenCV's Haar cascade finds them (it ships inside
opencv-python-headless: nothing to download). Each face is cut out as a square around its box, scaled to 512×512 —
the size both models work at — restored, scaled back and pasted in with a feathered edge, so the picture around
the face is untouched. Faces are not rotated upright first (RetinaFace's landmarks would be needed for that)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image, ImageDraw, ImageFilter

from .contract import RequestError
from .upscalers import MODEL_SUFFIXES, PICKLE_SUFFIXES, spandrel_module

log = logging.getLogger(__name__)

GFPGAN, CODEFORMER = "GFPGAN", "CodeFormer"
RESTORERS = (CODEFORMER, GFPGAN)  # A1111's order in its face-restorers listing
FOLDER_NAMES = {GFPGAN: "models/GFPGAN", CODEFORMER: "models/Codeformer"}  # A1111's defaults, for messages
FACE_SIZE = 512  # both models take and give 512×512 faces
# A Haar box spans brows to mouth; FFHQ-aligned crops (what the models learned on) have the eyes ~25% of the crop
# apart and a little above its centre. This square around the box gives about that framing.
CROP_SCALE = 1.5
CROP_CENTRE_DOWN = 0.45  # the crop's centre, as a fraction of the box's height from its top
MIN_FACE = 24  # pixels: smaller boxes are not faces worth restoring (and are Haar's usual false finds)
MAX_FACES = 32  # faces restored in one picture, largest first
FEATHER = 0.06  # the pasted square's soft edge, as a fraction of its side
NONE_INSTALLED = ("Restore faces is not available on this server: no face restorer is installed (GFPGAN weights, "
                  f"GFPGANv1.4.pth, in {FOLDER_NAMES[GFPGAN]}, or CodeFormer weights, codeformer-v0.1.0.pth, in "
                  f"{FOLDER_NAMES[CODEFORMER]}).")


class FaceRestoreError(RequestError):
    """Face restoration that cannot run; the message names the restorer and what to do (never a server path)."""


@dataclass(frozen=True)
class RestorerFile:
    name: str  # GFPGAN or CodeFormer
    file: str  # the file's name, for messages
    path: Path
    refused: Optional[str] = None  # why it cannot be used, or None


def _pick_file(name: str, folder: Optional[Path], allow_pickle: bool) -> Optional[RestorerFile]:
    """The restorer's weights in `folder`: files named like A1111's (gfpgan*, codeformer*), .safetensors first, then
    by name (the highest GFPGAN version last, so it wins). Other files there (facexlib's detection and parsing
    weights, which A1111 keeps in models/GFPGAN) are left alone."""
    if folder is None or not folder.is_dir():
        return None
    stem = name.lower()
    found = [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()
             and p.suffix.lower() in MODEL_SUFFIXES + PICKLE_SUFFIXES and p.name.lower().startswith(stem)]
    if not found:
        return None
    found.sort(key=lambda p: (p.suffix.lower() in MODEL_SUFFIXES, p.name.lower()))
    path = found[-1]
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        return RestorerFile(name, path.name, path, refused=f"{path.name} is a pickle, which can run code when loaded: "
                            "convert it to .safetensors, or start the studio with --allow-pickle.")
    return RestorerFile(name, path.name, path)


def find_faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of the faces OpenCV's frontal-face Haar cascade finds, largest first."""
    import cv2
    import numpy as np

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(np.array(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(MIN_FACE, MIN_FACE))
    found = [tuple(int(v) for v in box) for box in (boxes if len(boxes) else [])]
    return sorted(found, key=lambda b: -b[2] * b[3])[:MAX_FACES]


def face_square(box: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """(left, top, side) of the square cut out around a face's box; it may reach past the picture's edges."""
    x, y, w, h = box
    side = max(8, round(max(w, h) * CROP_SCALE))
    centre_x, centre_y = x + w / 2, y + h * CROP_CENTRE_DOWN
    return round(centre_x - side / 2), round(centre_y - side / 2), side


def _cut(pixels, left: int, top: int, side: int):
    """The side×side square at (left, top) of an (h, w, 3) array, the picture's edge pixels repeated past its edges."""
    import numpy as np

    height, width = pixels.shape[:2]
    pad = ((max(0, -top), max(0, top + side - height)), (max(0, -left), max(0, left + side - width)), (0, 0))
    inside = pixels[max(0, top):min(height, top + side), max(0, left):min(width, left + side)]
    return np.pad(inside, pad, mode="edge")


def _feather_mask(side: int) -> Image.Image:
    edge = max(1, round(side * FEATHER))
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).rectangle([edge, edge, side - 1 - edge, side - 1 - edge], fill=255)
    return mask.filter(ImageFilter.GaussianBlur(edge / 2))


class FaceRestorers:
    """GFPGAN and CodeFormer, each from its folder; loaded on first use and kept."""

    def __init__(self, folders: dict[str, Optional[Path]], allow_pickle: bool = False):
        self.folders = {name: Path(folder) if folder is not None else None for name, folder in folders.items()}
        self.allow_pickle = allow_pickle
        self._lock = threading.Lock()  # one restoration at a time: the models are shared
        self._loaded: dict[str, tuple] = {}  # name → ((path, mtime, size, device), descriptor)

    def _file(self, name: str) -> Optional[RestorerFile]:
        return _pick_file(name, self.folders.get(name), self.allow_pickle)

    def names(self) -> list[str]:
        """The restorers that can run here, in A1111's order."""
        return [name for name in RESTORERS if (entry := self._file(name)) is not None and entry.refused is None
                and self._libraries_missing(name) is None]

    def listing(self) -> list[dict]:
        """A1111's /sdapi/v1/face-restorers: the installed ones."""
        return [{"name": name, "cmd_dir": None} for name in self.names()]

    @staticmethod
    def _libraries_missing(name: str) -> Optional[str]:
        import importlib.util

        missing = [package for module, package in (("cv2", "opencv-python-headless"), ("spandrel", "spandrel"))
                   if importlib.util.find_spec(module) is None]
        if name == CODEFORMER and importlib.util.find_spec("spandrel_extra_arches") is None:
            missing.append("spandrel_extra_arches")
        return ", ".join(missing) or None

    def choose(self, wanted: Optional[str]) -> str:
        """The restorer to use for "restore faces": `wanted` (A1111's face_restoration_model option), or when it is
        None the first installed one. Raises FaceRestoreError when that one cannot run."""
        if wanted is not None:
            self.check(wanted)  # unknown or not installed: says so, rather than restoring with another
            return wanted
        installed = self.names()
        if installed:
            return installed[0]
        raise FaceRestoreError(NONE_INSTALLED)

    def check(self, name: str) -> None:
        """Raises FaceRestoreError unless restorer `name` can run: it names the folder and what to install."""
        if name not in RESTORERS:
            raise FaceRestoreError(f"Unknown face restorer {str(name)[:100]!r}: choose {' or '.join(RESTORERS)}.")
        entry = self._file(name)
        if entry is None:
            raise FaceRestoreError(f"Face restoration with {name} is not installed on this server: put its weights "
                                   f"({'GFPGANv1.4.pth' if name == GFPGAN else 'codeformer-v0.1.0.pth'}) in "
                                   f"{FOLDER_NAMES[name]}.")
        if entry.refused:
            raise FaceRestoreError(f"Face restorer {name} cannot be used: {entry.refused}")
        missing = self._libraries_missing(name)
        if missing:
            raise FaceRestoreError(f"Face restoration with {name} needs {missing} installed on this server "
                                   "(see requirements.txt and requirements-nodeps.txt).")

    def restore(self, image: Image.Image, name: str, codeformer_weight: float = 0.5, device="cpu") -> Image.Image:
        """`image` with each face found restored by `name`; the same picture (as RGB) when none is found. Raises
        FaceRestoreError when the restorer cannot run."""
        self.check(name)
        import numpy as np

        rgb = image.convert("RGB")
        boxes = find_faces(rgb)
        if not boxes:
            return rgb
        pixels = np.array(rgb)
        result = rgb.copy()
        with self._lock:
            descriptor = self._model(name, device)
            for box in reversed(boxes):  # the largest last, so it is on top where faces overlap
                left, top, side = face_square(box)
                face = Image.fromarray(_cut(pixels, left, top, side)).resize((FACE_SIZE, FACE_SIZE), Image.Resampling.LANCZOS)
                restored = self._run(descriptor, name, face, codeformer_weight)
                result.paste(restored.resize((side, side), Image.Resampling.LANCZOS), (left, top), _feather_mask(side))
        return result

    def _model(self, name: str, device):
        import torch

        entry = self._file(name)
        try:
            stat = entry.path.stat()
        except OSError:
            raise FaceRestoreError(f"Face restorer {name} ({entry.file}) is no longer in its folder.") from None
        key = (entry.path, stat.st_mtime_ns, stat.st_size, str(device))
        held = self._loaded.get(name)
        if held is not None and held[0] == key:
            return held[1]
        descriptor = load_restorer(entry)
        descriptor.to(torch.device(device)).to(torch.float32)  # neither model supports float16 (spandrel says so)
        descriptor.model.eval()
        self._loaded[name] = (key, descriptor)
        return descriptor

    @staticmethod
    def _run(descriptor, name: str, face: Image.Image, codeformer_weight: float) -> Image.Image:
        """One 512×512 face through the model, in the [-1, 1] range both were trained on."""
        import numpy as np
        import torch

        tensor = torch.from_numpy(np.array(face)).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        tensor = tensor.to(descriptor.device)
        with torch.inference_mode():
            if name == CODEFORMER:
                output = descriptor.model(tensor, weight=float(codeformer_weight), adain=True)[0]
            else:  # the weights' own noise buffers instead of fresh noise: the same picture gives the same face
                output = descriptor.model(tensor, randomize_noise=False)[0]
        pixels = output[0].float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(pixels, "RGB")


def load_restorer(entry: RestorerFile):
    """spandrel's model for `entry`, on the CPU; FaceRestoreError (naming the file) unless it is `entry.name`'s."""
    spandrel = spandrel_module()
    registry = spandrel.MAIN_REGISTRY
    if entry.name == CODEFORMER:
        import spandrel_extra_arches

        registry = registry.copy()
        registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    try:
        descriptor = spandrel.ModelLoader(registry=registry).load_from_file(str(entry.path))
    except Exception as exc:
        log.warning("Face restorer %s could not be loaded: %s", entry.path, exc)
        raise FaceRestoreError(f"Face restorer {entry.name} could not be loaded: {entry.file} is not a model spandrel "
                               "knows (a damaged file, or another kind of model).") from None
    if descriptor.architecture.id != entry.name:
        raise FaceRestoreError(f"{entry.file} in the {entry.name} folder is a {descriptor.architecture.name} model, "
                               f"not {entry.name}.")
    return descriptor
