"""The Extras tab (A1111's "Extras → Single image"): its controls become the right ExtrasRequest, its handler shows
the engine's messages (never a stack trace) and hands the result over with its PNG text — without a server; then
the `/extras` Gradio endpoint through gradio_client against the whole studio: a 64×64 PNG, Lanczos, scale by 2 →
128×128 and an info text naming Lanczos; an unknown upscaler → a clear error; the face sliders with CodeFormer
installed (a small random-weight one: one restore, a few seconds) and GFPGAN not (its folder named in the error), and
the line saying which restorers are installed."""

from __future__ import annotations

import subprocess
import sys

import gradio as gr
import pytest
from PIL import Image

from studio.contract import RequestError
from studio.extras import SCALE_BY, SCALE_TO, ExtrasBusyError, ExtrasRequest
from studio.ui import extras as ui_extras
from studio.ui.streaming import Services, Session

from tests.ui_support import launch_studio, make_input_png


@pytest.fixture(scope="module")
def face_dirs(tmp_path_factory):
    """(GFPGAN's folder, empty; CodeFormer's, with small random weights)."""
    from tests.support.face_files import write_codeformer

    root = tmp_path_factory.mktemp("models")
    write_codeformer(root / "Codeformer")
    return root / "GFPGAN", root / "Codeformer"


@pytest.fixture(scope="module")
def tiny_settings(tmp_path_factory, studio_cache, face_dirs):
    """This module's engine reads the face folders above (conftest's engine fixture builds on this)."""
    from tests.support.face_files import settings_with_faces

    return settings_with_faces(tmp_path_factory.mktemp("outputs"), studio_cache, face_dirs)


class FakeService:
    """JobService's Extras side: records the calls, answers like studio.extras.run_plan (or raises)."""

    def __init__(self, error: Exception | None = None):
        self.calls, self.error = [], error

    def upscalers(self):
        return [{"name": name} for name in ("None", "Lanczos", "Nearest", "4x-UltraSharp")]

    def face_restorers(self):
        return [{"name": "CodeFormer", "cmd_dir": None}]

    def extras(self, user, request):
        self.calls.append((user, request))
        if self.error is not None:
            raise self.error
        picture = request.image.resize((request.image.width * 2, request.image.height * 2))
        info = "" if request.upscaler_1 == "None" else f"Postprocess upscale by: 2, Postprocess upscaler: {request.upscaler_1}"
        picture.info = {"postprocessing": info, "parameters": info} if info else {}
        return picture, info


class FakeFiles:
    """GradioFiles' store: keeps the bytes handed over, per user."""

    def __init__(self):
        self.stored = []

    def store(self, user, data, name, extension):
        self.stored.append((user, data, name, extension))
        return f"/cache/{name}.{extension}"


class FakeRequest:
    username = "alice"


def _picture(size=(64, 64)) -> Image.Image:
    return Image.new("RGB", size, (40, 90, 200))


# ---- the controls → the request


def test_the_controls_become_an_extras_request():
    picture = _picture()
    # as the browser sends them: sliders and the hidden mode as floats
    request = ui_extras.extras_request(picture, 0.0, 2.5, 640.0, 384.0, False, "Lanczos", "Nearest", 0.25, 0.5, 0.75, 0.125)
    assert request == ExtrasRequest(image=picture, resize_mode=SCALE_BY, upscaling_resize=2.5, upscaling_resize_w=640,
                                    upscaling_resize_h=384, upscaling_crop=False, upscaler_1="Lanczos", upscaler_2="Nearest",
                                    extras_upscaler_2_visibility=0.25, gfpgan_visibility=0.5, codeformer_visibility=0.75,
                                    codeformer_weight=0.125)
    assert isinstance(request.resize_mode, int) and isinstance(request.upscaling_resize_w, int)
    scale_to = ui_extras.extras_request(picture, 1, 2, 512, 768, True, " Lanczos ", None, None)
    assert (scale_to.resize_mode, scale_to.upscaling_resize_w, scale_to.upscaling_resize_h) == (SCALE_TO, 512, 768)
    assert scale_to.upscaling_crop is True and scale_to.upscaler_1 == "Lanczos" and scale_to.upscaler_2 == "None"
    assert scale_to.extras_upscaler_2_visibility == 0.0
    assert (scale_to.gfpgan_visibility, scale_to.codeformer_visibility, scale_to.codeformer_weight) == (0.0, 0.0, 0.0)
    defaults = ui_extras.extras_request(picture)  # an API caller who sends only the picture: A1111's defaults
    assert defaults == ExtrasRequest(image=picture)


@pytest.mark.parametrize("fields, message", [
    (dict(image=None), "Add an input image first"),
    (dict(upscaling_resize="2"), "upscaling_resize must be a number"),
    (dict(upscaling_crop="yes"), "upscaling_crop must be true or false"),
    (dict(upscaler_1=3), "upscaler_1 must be an upscaler's name"),
    (dict(extras_upscaler_2_visibility=True), "extras_upscaler_2_visibility must be a number"),
    (dict(gfpgan_visibility="0.5"), "gfpgan_visibility must be a number"),
    (dict(codeformer_visibility=[1]), "codeformer_visibility must be a number"),
    (dict(codeformer_weight=False), "codeformer_weight must be a number"),
])
def test_bad_controls_are_refused_with_a_message(fields, message):
    values = dict(image=_picture(), resize_mode=0, upscaling_resize=2, upscaling_resize_w=512, upscaling_resize_h=512,
                  upscaling_crop=True, upscaler_1="Lanczos", upscaler_2="None", extras_upscaler_2_visibility=0)
    values.update(fields)
    with pytest.raises(RequestError, match=message):
        ui_extras.extras_request(**values)


def test_values_only_the_engine_can_judge_go_on_to_its_checks():
    from studio.extras import check_fields

    request = ui_extras.extras_request(_picture(), 1, 2, 512.5, 512, True, "Lanczos")
    assert request.upscaling_resize_w == 512.5  # not rounded silently
    with pytest.raises(RequestError, match="upscaling_resize_w must be a whole number"):
        check_fields(request)


def test_the_face_line_says_what_is_installed_and_where_the_rest_goes():
    assert ui_extras.faces_hint(["CodeFormer", "GFPGAN"]) == (
        "<div class='studio-faces-hint'>Face restoration installed: CodeFormer, GFPGAN.</div>")
    some = ui_extras.faces_hint(["CodeFormer"])
    assert "installed: CodeFormer." in some and "GFPGAN is not" in some
    assert "models/GFPGAN" in some and "models/Codeformer" not in some
    none = ui_extras.faces_hint([])
    assert "none installed" in none and "models/GFPGAN" in none and "models/Codeformer" in none
    from studio.ui import options

    service = FakeService()
    assert options.face_restorer_names(service) == ["CodeFormer"]
    service.face_restorers = lambda: (_ for _ in ()).throw(OSError("the folder is gone"))
    assert options.face_restorer_names(service) == []  # the tabs still build


def test_the_upscaler_menus_list_picture_upscalers_with_none_first():
    service = FakeService()
    service.upscalers = lambda: [{"name": "Lanczos"}, {"name": "Latent (bicubic)"}, {"name": "None"}, {"name": "Nearest"}]
    assert ui_extras.upscaler_names(service) == ["None", "Lanczos", "Nearest"]

    def broken():
        raise OSError("the folder is gone")

    service.upscalers = broken
    assert ui_extras.upscaler_names(service) == ["None"]  # the tab still builds


# ---- the handler's work, without a server


def test_the_handler_runs_the_users_request_and_keeps_the_png_text():
    service, files = FakeService(), FakeFiles()
    request = ui_extras.extras_request(_picture(), 0, 2, 512, 512, True, "Lanczos", "None", 0)
    value, info = ui_extras.run_extras(Services(service, files=files), request, FakeRequest())
    assert service.calls == [("alice", request)]
    assert info == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert value == "/cache/extras.png"
    user, data, name, extension = files.stored[0]
    assert (user, name, extension) == ("alice", "extras", "png")
    import io

    with Image.open(io.BytesIO(data)) as stored:
        assert stored.size == (128, 128)
        assert stored.text["postprocessing"] == info and stored.text["parameters"] == info


@pytest.mark.parametrize("error, shown", [
    (ExtrasBusyError("The server is busy with other Extras jobs: try again in a moment."), "busy with other Extras jobs"),
    (RequestError("Upscaler 'Nope' is not there; choose one of: None, Lanczos, Nearest"), "Upscaler 'Nope' is not there"),
    (RuntimeError("CUDA out of memory at /secret/path.py"), "Could not upscale the picture; the server log says why."),
])
def test_errors_become_messages_not_tracebacks(error, shown):
    request = ui_extras.extras_request(_picture(), upscaler_1="Lanczos")
    with pytest.raises(gr.Error) as caught:
        ui_extras.run_extras(Services(FakeService(error)), request, None)
    assert shown in caught.value.message
    assert "secret" not in caught.value.message and not caught.value.print_exception


def test_upscaler_1_none_leaves_the_picture_and_says_so(monkeypatch):
    warned = []
    monkeypatch.setattr(ui_extras.gr, "Warning", lambda message, *a, **k: warned.append(message))
    value, info = ui_extras.run_extras(Services(FakeService()), ui_extras.extras_request(_picture()), None)
    assert info == "" and isinstance(value, Image.Image) and "Upscaler 1 is None" in warned[0]


def test_a_send_needs_a_result_first(tmp_path):
    with pytest.raises(gr.Error, match="press Generate in Extras first"):
        ui_extras.last_result(Session())
    state = Session()
    state.extras_result = str(tmp_path / "gone.png")
    with pytest.raises(gr.Error, match="no longer kept"):
        ui_extras.last_result(state)
    (tmp_path / "gone.png").write_bytes(b"png")
    assert ui_extras.last_result(state) == str(tmp_path / "gone.png")


def test_the_extras_tab_stays_torch_free():
    code = "import sys, studio.ui.extras; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---- the /extras endpoint, through gradio_client against the whole studio


@pytest.fixture(scope="module")
def client(engine):
    gradio_client = pytest.importorskip("gradio_client")
    with launch_studio(engine) as server:
        yield gradio_client.Client(server.url + "/", verbose=False)


def test_the_api_names_its_parameters_as_a1111(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/extras"]
    assert [p["parameter_name"] for p in api["parameters"]] == [
        "image", "resize_mode", "upscaling_resize", "upscaling_resize_w", "upscaling_resize_h", "upscaling_crop", "upscaler_1",
        "upscaler_2", "extras_upscaler_2_visibility", "gfpgan_visibility", "codeformer_visibility", "codeformer_weight"]
    # the browser's sliders feed the parameters of their names, with A1111's defaults
    faces = {p["parameter_name"]: p for p in api["parameters"][-3:]}
    assert {name: p["label"] for name, p in faces.items()} == {
        "gfpgan_visibility": "GFPGAN visibility", "codeformer_visibility": "CodeFormer visibility",
        "codeformer_weight": "CodeFormer weight"}
    assert all(p["parameter_default"] == 0 for p in faces.values())


def test_extras_scales_a_png_by_2_with_lanczos(client, tmp_path):
    from gradio_client import handle_file

    source = make_input_png(tmp_path / "in.png")
    path, info = client.predict(image=handle_file(str(source)), resize_mode=0, upscaling_resize=2, upscaler_1="Lanczos",
                                api_name="/extras")
    assert info == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    with Image.open(path) as result:
        assert result.size == (128, 128)
        assert result.text.get("postprocessing") == info  # the PNG the download gives keeps A1111's text
    # A picture with generation parameters (a result sent from Text to image) keeps them, as A1111 does
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a lighthouse\nSteps: 3, Seed: 42")
    with Image.open(source) as picture:
        picture.save(tmp_path / "with-parameters.png", pnginfo=text)
    path, info = client.predict(image=handle_file(str(tmp_path / "with-parameters.png")), upscaler_1="Lanczos", api_name="/extras")
    with Image.open(path) as result:
        assert result.text.get("parameters") == "a lighthouse\nSteps: 3, Seed: 42" and result.text.get("postprocessing") == info
    # Scale to, cropped: the centre of the picture scaled to cover the size
    path, info = client.predict(image=handle_file(str(source)), resize_mode=1, upscaling_resize_w=96, upscaling_resize_h=48,
                                upscaling_crop=True, upscaler_1="Nearest", api_name="/extras")
    assert "Postprocess upscale to: 96x48" in info and "Postprocess crop to: 96x48" in info
    with Image.open(path) as result:
        assert result.size == (96, 48)


def test_an_unknown_upscaler_is_a_clear_error(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    source = make_input_png(tmp_path / "in.png")
    with pytest.raises(AppError) as caught:
        client.predict(image=handle_file(str(source)), upscaler_1="No such upscaler", api_name="/extras")
    message = str(caught.value)
    assert "Upscaler 'No such upscaler' is not there" in message and "Lanczos" in message
    assert "Traceback" not in message and "File \"" not in message
    with pytest.raises(AppError, match="Add an input image first"):
        client.predict(image=None, upscaler_1="Lanczos", api_name="/extras")


def test_the_face_sliders_reach_the_engine(client, tmp_path):
    """Each slider to its own field (no face in this picture: nothing to restore, so no model runs); GFPGAN, not
    installed here, is the engine's message naming its folder."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    source = handle_file(str(make_input_png(tmp_path / "in.png")))
    path, info = client.predict(image=source, upscaler_1="Lanczos", codeformer_visibility=0.5, codeformer_weight=0.25,
                                api_name="/extras")
    assert info == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos, CodeFormer visibility: 0.5, CodeFormer weight: 0.25"
    with pytest.raises(AppError) as caught:
        client.predict(image=source, upscaler_1="Lanczos", gfpgan_visibility=0.5, api_name="/extras")
    message = str(caught.value)
    assert "GFPGAN" in message and "models/GFPGAN" in message and "not installed" in message
    assert "Traceback" not in message and str(tmp_path) not in message


def test_codeformer_restores_the_face_through_the_tab(client, tmp_path):
    from gradio_client import handle_file

    from studio.faces import face_square, find_faces
    from tests.support.face_files import drawn_face

    face = drawn_face(128)
    face.save(tmp_path / "face.png")
    path, info = client.predict(image=handle_file(str(tmp_path / "face.png")), codeformer_visibility=1, codeformer_weight=0.5,
                                api_name="/extras")
    assert info == "CodeFormer visibility: 1.0, CodeFormer weight: 0.5"
    with Image.open(path) as result:
        assert result.size == face.size and result.text.get("postprocessing") == info
        left, top, side = face_square(find_faces(face)[0])
        inside = (max(left, 0), max(top, 0), min(left + side, 128), min(top + side, 128))
        assert result.convert("RGB").crop(inside).tobytes() != face.crop(inside).tobytes()  # the face was redrawn


def test_the_page_says_which_restorers_are_installed(engine):
    """Built, on page load and on selecting Extras: CodeFormer here, GFPGAN not."""
    from studio.service import JobService
    from studio.ui import build_ui

    blocks = build_ui(JobService.for_operator(engine))
    try:
        by_id = {block.elem_id: block for block in blocks.blocks.values() if getattr(block, "elem_id", None)}
        assert by_id["txt2img-restore-faces"].info == "with CodeFormer"
        assert "installed: CodeFormer." in by_id["extras-faces-hint"].value and "models/GFPGAN" in by_id["extras-faces-hint"].value
        hint = by_id["extras-faces-hint"]
        refreshers = [fn for fn in blocks.fns.values() if hint in fn.outputs]
        assert len(refreshers) == 2  # the page load and the Extras tab's select
        for fn in refreshers:
            values = fn.fn(*[None] * len(fn.inputs))
            assert "installed: CodeFormer." in values[fn.outputs.index(hint)]
        load = next(fn for fn in refreshers if by_id["inpaint-restore-faces"] in fn.outputs)
        values = load.fn()
        assert [values[load.outputs.index(by_id[f"{tab}-restore-faces"])].info for tab in ("txt2img", "img2img", "inpaint")] == [
            "with CodeFormer"] * 3
    finally:
        blocks.close()
