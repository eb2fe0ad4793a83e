"""Restore faces (studio/faces.py): GFPGAN and CodeFormer weights in their A1111 folders (random weights, written by
tests/support/face_files.py) are listed, loaded with spandrel and run on the faces OpenCV finds — only the square
around each face changes, the same picture gives the same result — through Extras' visibilities and txt2img's
restore_faces, with A1111's infotext; what is missing or unsafe (no weights, a pickle, the wrong model) is a clear
error that names the folder, not a server path."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from server_support import live_server

from studio.contract import GenerationRequest
from studio.faces import CODEFORMER, GFPGAN, FaceRestoreError, FaceRestorers, face_square, find_faces
from tests.support.esrgan_files import esrgan_tensors, write_model
from tests.support.face_files import drawn_face, settings_with_faces, write_codeformer, write_gfpgan

SINGLE = "/sdapi/v1/extra-single-image"


@pytest.fixture(scope="module")
def face_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_gfpgan(root / "GFPGAN")
    write_codeformer(root / "Codeformer")
    return root / "GFPGAN", root / "Codeformer"


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache, face_dirs):
    """This module's engine reads the face folders above (conftest's engine fixture builds on this)."""
    return settings_with_faces(tmp_path_factory.mktemp("outputs"), studio_cache, face_dirs)


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with server.client("alice") as client:
        yield client


@pytest.fixture(scope="module")
def face():
    return drawn_face(256)


@pytest.fixture(scope="module")
def restored(engine, face):
    """The drawn face fully restored by GFPGAN (computed once: about 4 s on the CPU)."""
    return engine.faces.restore(face, GFPGAN)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def _square_mask(image: Image.Image, box) -> np.ndarray:
    left, top, side = face_square(box)
    mask = np.zeros((image.height, image.width), dtype=bool)
    mask[max(0, top):top + side, max(0, left):left + side] = True
    return mask


def test_the_drawn_face_is_found_and_flat_or_noisy_pictures_have_none(face):
    boxes = find_faces(face)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 30 <= x <= 60 and 20 <= y <= 50 and 140 <= w <= 200  # around the drawn oval
    assert find_faces(Image.new("RGB", (256, 256), (120, 120, 120))) == []
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    assert find_faces(noise) == []


def test_both_restorers_are_listed(client, engine):
    assert engine.faces.names() == [CODEFORMER, GFPGAN]
    assert client.get("/sdapi/v1/face-restorers").json() == [{"name": "CodeFormer", "cmd_dir": None},
                                                              {"name": "GFPGAN", "cmd_dir": None}]


def test_only_the_square_around_the_face_changes_and_again_the_same(engine, face, restored):
    box = find_faces(face)[0]
    inside = _square_mask(face, box)
    before, after = _pixels(face), _pixels(restored)
    assert restored.size == face.size
    assert np.array_equal(before[~inside], after[~inside])  # the rest of the picture is untouched
    assert np.abs(before[inside] - after[inside]).mean() > 10  # random weights: the face is redrawn
    assert np.array_equal(_pixels(engine.faces.restore(face, GFPGAN)), after)  # no fresh noise: the same result


def test_a_picture_without_a_face_comes_back_as_it_was(engine):
    flat = Image.new("RGB", (96, 64), (30, 140, 60))
    assert np.array_equal(_pixels(engine.faces.restore(flat, CODEFORMER)), _pixels(flat))


def test_extras_gfpgan_visibility_blends_the_restored_face_in(client, face, restored):
    full = client.post(SINGLE, json={"image": _b64(face), "gfpgan_visibility": 1}).json()
    assert np.array_equal(_pixels(_image(full["image"])), _pixels(restored))
    assert full["html_info"] == "<p>GFPGAN visibility: 1.0</p>"
    half = client.post(SINGLE, json={"image": _b64(face), "gfpgan_visibility": 0.5, "upscaler_1": "None"}).json()
    expected = Image.blend(face.convert("RGB"), restored, 0.5)
    assert np.abs(_pixels(_image(half["image"])) - _pixels(expected)).max() <= 1
    assert half["html_info"] == "<p>GFPGAN visibility: 0.5</p>"


def test_extras_upscales_first_then_codeformer_with_its_weight(client, face):
    data = client.post(SINGLE, json={"image": _b64(face.resize((128, 128))), "upscaler_1": "Lanczos", "upscaling_resize": 2,
                                     "codeformer_visibility": 1, "codeformer_weight": 0.25}).json()
    out = _image(data["image"])
    assert out.size == (256, 256)
    assert data["html_info"] == ("<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos, CodeFormer visibility: 1.0, "
                                 "CodeFormer weight: 0.25</p>")
    assert not np.array_equal(_pixels(out), _pixels(face.resize((128, 128)).resize((256, 256), Image.Resampling.LANCZOS)))


class Spy:
    """The engine's restorers, recording what txt2img asks of them (the tiny model draws no face to find)."""

    def __init__(self, real: FaceRestorers):
        self.real, self.calls = real, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def restore(self, image, name, codeformer_weight=0.5, device="cpu"):
        self.calls.append((image.size, name, codeformer_weight))
        marked = image.convert("RGB").copy()
        marked.paste((255, 0, 255), (0, 0, 4, 4))
        return marked


@pytest.fixture
def spy(engine):
    real = engine.faces
    engine.faces = Spy(real)
    yield engine.faces
    engine.faces = real


def test_txt2img_restore_faces_uses_the_users_restorer_and_says_so(client, spy):
    body = {"prompt": "a portrait", "steps": 2, "width": 64, "height": 64, "seed": 5, "restore_faces": True}
    data = client.post("/sdapi/v1/txt2img", json=body).json()
    infotext = json.loads(data["info"])["infotexts"][0]
    assert "Seed: 5, Face restoration: CodeFormer, Size: 64x64" in infotext  # A1111's default face_restoration_model
    assert spy.calls == [((64, 64), CODEFORMER, 0.5)]
    assert _pixels(_image(data["images"][0]))[0, 0].tolist() == [255, 0, 255]  # what the restorer gave is the image
    spy.calls.clear()
    body.update(override_settings={"face_restoration_model": "GFPGAN", "code_former_weight": 0.8})
    infotext = json.loads(client.post("/sdapi/v1/txt2img", json=body).json()["info"])["infotexts"][0]
    assert "Face restoration: GFPGAN" in infotext and spy.calls == [((64, 64), GFPGAN, 0.8)]
    spy.calls.clear()
    plain = client.post("/sdapi/v1/txt2img", json={**body, "restore_faces": False}).json()
    assert spy.calls == [] and "Face restoration" not in json.loads(plain["info"])["infotexts"][0]


def test_restore_faces_is_refused_at_submit_when_nothing_is_installed(engine, tmp_path):
    empty = FaceRestorers({GFPGAN: tmp_path / "GFPGAN", CODEFORMER: tmp_path / "Codeformer"})
    real = engine.faces
    engine.faces = empty
    try:
        with pytest.raises(FaceRestoreError) as refused:
            engine.submit(GenerationRequest(prompt="x", steps=1, width=64, height=64, restore_faces=True))
    finally:
        engine.faces = real
    assert "models/GFPGAN" in str(refused.value) and "models/Codeformer" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)


def test_a_named_restorer_is_used_or_refused_never_swapped(engine, tmp_path):
    from studio import cli

    only_codeformer = FaceRestorers({GFPGAN: tmp_path / "GFPGAN", CODEFORMER: engine.faces.folders[CODEFORMER]})
    args = cli._parser().parse_args(["generate", "--prompt", "p", "--restore-faces", "GFPGAN", "--codeformer-weight", "0.2"])
    request = cli._request(args, None, None)
    assert (request.restore_faces, request.face_restorer, request.codeformer_weight) == (True, "GFPGAN", 0.2)
    assert cli._request(cli._parser().parse_args(["generate", "--prompt", "p", "--restore-faces"]), None, None).face_restorer is None
    with pytest.raises(FaceRestoreError, match="GFPGAN is not installed.*models/GFPGAN"):
        only_codeformer.choose("GFPGAN")
    with pytest.raises(FaceRestoreError, match="Unknown face restorer"):
        only_codeformer.choose("gfpgn")
    assert only_codeformer.choose(None) == CODEFORMER


def test_a_pickle_is_refused_without_allow_pickle_and_the_wrong_model_is_named(tmp_path):
    (tmp_path / "GFPGAN").mkdir()
    (tmp_path / "GFPGAN" / "GFPGANv1.4.pth").write_bytes(b"not opened")
    (tmp_path / "GFPGAN" / "detection_Resnet50_Final.pth").write_bytes(b"facexlib's, left alone")
    write_model(tmp_path / "Codeformer" / "codeformer-v0.1.0.safetensors", esrgan_tensors(scale=2))
    restorers = FaceRestorers({GFPGAN: tmp_path / "GFPGAN", CODEFORMER: tmp_path / "Codeformer"})
    assert restorers.names() == [CODEFORMER]  # listed: the file is safe to open (what it is shows when it is)
    with pytest.raises(FaceRestoreError, match="pickle.*--allow-pickle"):
        restorers.check(GFPGAN)
    with pytest.raises(FaceRestoreError, match="is a ESRGAN model, not CodeFormer|ESRGAN.*not CodeFormer"):
        restorers.restore(drawn_face(128), CODEFORMER)
    assert FaceRestorers({GFPGAN: tmp_path / "GFPGAN"}, allow_pickle=True).names() == [GFPGAN]


def test_bad_fields_are_clear_422s(client, face):
    response = client.post(SINGLE, json={"image": _b64(face), "codeformer_visibility": 1, "codeformer_weight": 2})
    assert response.status_code == 422 and "codeformer_weight" in response.text
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "width": 64, "height": 64,
                                                      "restore_faces": True, "override_settings": {"code_former_weight": "high"}})
    assert response.status_code == 422 and "code_former_weight" in response.text


def test_the_xyz_face_restore_axis_turns_it_off_and_names_the_restorer(client, spy):
    args = dict(x_type=33, x_values="False, GFPGAN", x_values_dropdown=[], y_type=0, y_values="", y_values_dropdown=[],
                z_type=0, z_values="", z_values_dropdown=[], draw_legend=True, include_lone_images=True,
                include_sub_grids=False, no_fixed_seeds=False, vary_seeds_x=False, vary_seeds_y=False,
                vary_seeds_z=False, margin_size=0, csv_mode=False)
    body = {"prompt": "a portrait", "steps": 1, "width": 64, "height": 64, "seed": 3, "script_name": "x/y/z plot",
            "script_args": list(args.values())}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    infotexts = json.loads(response.json()["info"])["infotexts"]
    assert spy.calls == [((64, 64), GFPGAN, 0.5)]  # the "False" cell is not restored
    assert sum("Face restoration: GFPGAN" in text for text in infotexts) == 1
