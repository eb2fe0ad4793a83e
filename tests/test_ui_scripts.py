"""The Script dropdown of Text to image and Image to image (A1111's scripts in the UI): what each panel's controls
become as script_args (no server), the API's script_name / script_args, and through gradio_client an X/Y plot
(Steps × CFG scale at 64×64) whose gallery holds the grid and each cell with its own parameters, an unsupported axis
and too many images refused with a clear message, and Cancel ending a script with the cells so far."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from PIL import Image

from studio.contract import GenerationRequest, RequestError
from studio.metadata import parse_infotext, read_infotext
from studio.scripts.common import Output
from studio.ui import script_panel
from studio.ui.script_panel import (NO_SCRIPT, api_script, axis_labels, prompt_matrix_args, prompts_from_file_args,
                                    script_titles, sd_upscale_args, uses_dropdown, xyz_args)
from studio.ui.script_runs import captions, stream_script
from studio.ui.streaming import Services, Session, cancel_job

from tests.server_support import job_service

# ---- the panels' values → script_args (no server)


def test_the_script_dropdown_lists_a1111s_scripts_per_tab():
    assert script_titles(False) == [NO_SCRIPT, "Prompt matrix", "Prompts from file or textbox", "X/Y/Z plot"]
    assert script_titles(True) == [NO_SCRIPT, "Prompt matrix", "Prompts from file or textbox", "SD upscale", "X/Y/Z plot"]
    t2i, i2i = axis_labels(False), axis_labels(True)
    assert t2i[:5] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps"]
    assert {"Hires steps", "Hires sampler", "Hires upscaler"} <= set(t2i) and not {"Hires steps", "Hires upscaler"} & set(i2i)
    assert "Sigma Churn" not in t2i and "Sampler" in i2i  # only what this server's X/Y/Z plot supports
    assert uses_dropdown("Sampler", False) and not uses_dropdown("Sampler", True) and not uses_dropdown("Steps", False)


def test_xyz_controls_become_a1111s_18_args():
    args = xyz_args("Steps", "2,3", [], "CFG Scale", "5,7", [], "Nothing", "", [], True, True, False, False, False, False, False,
                    4.0, False)
    assert args == ["Steps", "2,3", [], "CFG Scale", "5,7", [], "Nothing", "", [], True, True, False, False, False, False, False,
                    4, False]
    # an axis with choices takes what the panel shows: its dropdown, not a hidden text box (and the reverse)
    args = xyz_args("Sampler", "stale text", ["Euler", "DPM++ 2M"], "Seed", "1, 2", ["hidden"])
    assert args[:6] == ["Sampler", "", ["Euler", "DPM++ 2M"], "Seed", "1, 2", []]
    args = xyz_args("Sampler", "Euler, DDIM", ["Euler"], csv_mode=True)
    assert args[:3] == ["Sampler", "Euler, DDIM", []] and args[-1] is True
    assert len(xyz_args()) == 18


def test_the_other_scripts_controls_become_their_args():
    assert prompt_matrix_args(True, False, "negative", "space", 6.0) == [True, False, "negative", "space", 6]
    assert prompts_from_file_args(True, False, "end", "a cat\na dog") == [True, False, "end", "a cat\na dog"]
    assert prompts_from_file_args(None, None, None, None) == [False, False, "start", ""]
    assert sd_upscale_args(32.0, "Lanczos", 1.5) == [None, 32, "Lanczos", 1.5]


def test_the_api_takes_script_name_and_json_args():
    assert api_script("", "") is None and api_script("None", "[1]") is None and api_script(None, None) is None
    assert api_script("X/Y/Z plot", '[4, "2,3"]') == ("X/Y/Z plot", [4, "2,3"])
    assert api_script("prompt matrix", "") == ("prompt matrix", [])
    assert api_script("x/y/z plot", '{"x_type": "Steps"}') == ("x/y/z plot", {"x_type": "Steps"})
    for bad, words in (("[1,", "not valid JSON"), ('"text"', "JSON list"), ("x" * (script_panel.MAX_ARGS_CHARS + 1), "at most")):
        with pytest.raises(RequestError, match=words):
            api_script("x/y/z plot", bad)
    with pytest.raises(RequestError, match="script_name"):
        api_script(["x/y/z plot"], "")


def test_the_built_panel_maps_its_controls_to_the_chosen_script(engine):
    import gradio as gr

    from studio.ui import img2img, txt2img

    with gr.Blocks():
        t2i = txt2img.build(Services(job_service(engine)), gr.State(Session()))
        i2i = img2img.build(Services(job_service(engine)), gr.State(Session()))
    panel, parts = t2i.scripts, t2i.scripts.parts
    values = {control: control.value for control in panel.inputs()}
    assert panel.call(values) is None  # "None": a plain job
    assert list(panel.boxes) == script_titles(False)[1:] and all(box.visible is False for box in panel.boxes.values())
    values.update({panel.script: "X/Y/Z plot", parts["x_type"]: "Steps", parts["x_values"]: "2,3",
                   parts["y_type"]: "CFG Scale", parts["y_values"]: "5,7", parts["xyz_margin"]: 2.0})
    title, args = panel.call(values)
    assert title == "X/Y/Z plot"
    assert args == ["Steps", "2,3", [], "CFG Scale", "5,7", [], "Nothing", "", [], True, True, False, False, False, False,
                    False, 2, False]
    values.update({panel.script: "Prompt matrix", parts["put_at_start"]: True, parts["prompt_type"]: "negative"})
    assert panel.call(values) == ("Prompt matrix", [True, False, "negative", "comma", 0])
    values.update({panel.script: "Prompts from file or textbox", parts["prompt_txt"]: "a\nb", parts["checkbox_iterate"]: True})
    assert panel.call(values) == ("Prompts from file or textbox", [True, False, "start", "a\nb"])
    values[panel.script] = "SD upscale"  # an img2img script
    with pytest.raises(RequestError, match="Unknown script"):
        panel.call(values)
    up = i2i.scripts
    values = {control: control.value for control in up.inputs()}
    values[up.script] = "SD upscale"
    assert up.call(values) == ("SD upscale", [None, 64, "Lanczos", 2.0])
    assert up.parts["upscaler"].choices[0][0] == "None"  # picture upscalers only: no latent modes
    assert not any(name.startswith("Latent") for name, _ in up.parts["upscaler"].choices)


def test_cell_captions_say_what_differs():
    outputs = [Output("a fox\nSteps: 2, CFG scale: 5.0, Seed: 1, Script: X/Y/Z plot", 1, "a fox", "", grid=True)]
    for steps, cfg in ((2, 5.0), (3, 5.0), (2, 7.0), (3, 7.0)):
        outputs.append(Output(f"a fox\nSteps: {steps}, Sampler: Euler, CFG scale: {cfg}, Seed: 1, Size: 64x64", 1, "a fox", ""))
    assert captions(outputs) == ["grid", "Steps: 2, CFG scale: 5.0", "Steps: 3, CFG scale: 5.0", "Steps: 2, CFG scale: 7.0",
                                 "Steps: 3, CFG scale: 7.0"]
    same = [Output("a fox\nSteps: 2, Seed: 5", 5, "a fox", ""), Output("a fox\nSteps: 2, Seed: 5", 5, "a fox", "")]
    assert captions(same) == ["seed 5", "seed 5"]


# ---- running a script for a tab (the UI's streaming handler, no server)


def _run(engine, session: Session, name: str, args, request: GenerationRequest, on_update=None) -> list:
    service = job_service(engine)

    async def run():
        updates = []
        async for update in stream_script(Services(service), session, "txt2img", request, None, name, args, False):
            updates.append(update)
            if on_update is not None:
                on_update(service, updates)
        return updates

    return asyncio.run(run())


def test_cancel_ends_a_script_with_the_cells_so_far(engine):
    session = Session()
    request = GenerationRequest("a slow fox", steps=100, width=64, height=64, seed=3)
    args = xyz_args("Seed", "1, 2, 3, 4, 5, 6", [], include_lone_images=True)
    cancelled = []

    def cancel_on_second_cell(service, updates):
        if not cancelled and "Cell 2/6" in str(updates[-1][1]):
            cancelled.append(cancel_job(service, session, "txt2img"))

    updates = _run(engine, session, "X/Y/Z plot", args, request, cancel_on_second_cell)
    assert cancelled and "Cancelling" in cancelled[0]
    progress = [u[1] for u in updates if isinstance(u[1], str)]
    assert any("Cell 1/6" in p for p in progress), progress
    done = re.search(r"Cancelled after (\d)/6 cells: 1 grid and (\d) images?", progress[-1])
    assert done and done.group(1) == done.group(2) and 1 <= int(done.group(1)) < 6, progress[-1]  # a cell may share a batch
    gallery = updates[-1][2]
    assert len(gallery) == 1 + int(done.group(1)) and gallery[0][1] == "grid"
    assert "txt2img" not in session.scripts and len(session.results["txt2img"]) == len(gallery)
    jobs = [job for job in job_service(engine).jobs("local") if job.request.prompt == "a slow fox"]
    assert len(jobs) <= 3 and all(job.done for job in jobs)  # the rest never queued, nothing left running


def test_a_refused_script_is_a_gradio_error_before_anything_runs(engine):
    import gradio as gr

    with pytest.raises(gr.Error, match="at most 100 per script call"):
        _run(engine, Session(), "X/Y/Z plot", xyz_args("Steps", "1-11", [], "CFG Scale", "1-11"),
             GenerationRequest("x", steps=2, width=64, height=64))


# ---- through the UI's API (the whole studio, the tiny model)


@pytest.fixture(scope="module")
def client(engine):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.ui_support import launch_studio

    with launch_studio(engine) as server:
        yield gradio_client.Client(server.url + "/", verbose=False)


def test_the_endpoints_take_script_name_and_script_args_with_defaults(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for endpoint in ("/txt2img", "/img2img"):
        params = {p["parameter_name"]: p for p in api[endpoint]["parameters"]}
        assert params["script_name"]["parameter_has_default"] and params["script_name"]["parameter_default"] == ""
        assert params["script_args"]["parameter_has_default"] and params["script_args"]["parameter_default"] == ""
    assert "/txt2img_ui" not in api and "/img2img_ui" not in api  # the browser's listeners are private


def test_xyz_plot_through_the_api_gives_the_grid_and_every_cell(client):
    script_args = xyz_args("Steps", "2,3", [], "CFG Scale", "5,7", [], include_lone_images=True)
    result = client.predict(api_name="/txt2img", prompt="a red fox", steps=4, width=64, height=64, seed=21,
                            script_name="X/Y/Z plot", script_args=json.dumps(script_args))
    live, progress, gallery, infotext, downloads = result
    assert len(gallery) == 5, gallery
    assert "Done: X/Y/Z plot, 1 grid and 4 images" in progress
    with Image.open(gallery[0]["image"]) as grid:
        assert grid.width > 2 * 64 and grid.height > 2 * 64
        assert read_infotext(grid) == infotext
    assert "Script: X/Y/Z plot" in infotext and "X Type: Steps" in infotext and "Y Type: CFG Scale" in infotext
    assert gallery[0]["caption"] == "grid"
    expected = [(2, 5.0), (3, 5.0), (2, 7.0), (3, 7.0)]  # X across, then Y down
    for item, (steps, cfg) in zip(gallery[1:], expected):
        with Image.open(item["image"]) as cell:
            assert cell.size == (64, 64)
            params = parse_infotext(read_infotext(cell))
        assert (int(params["Steps"]), float(params["CFG scale"]), params["Seed"]) == (steps, cfg, "21")
        assert item["caption"] == f"Steps: {steps}, CFG scale: {params['CFG scale']}"  # what tells the cells apart
    assert downloads.count("<a ") == 5


def test_sd_upscale_through_the_img2img_api(client, tmp_path):
    from gradio_client import handle_file

    from tests.ui_support import make_input_png

    picture = handle_file(str(make_input_png(tmp_path / "small.png")))
    result = client.predict(api_name="/img2img", prompt="a tile", init_image=picture, steps=4, width=64, height=64, seed=4,
                            denoising_strength=0.5, script_name="SD upscale", script_args=json.dumps(sd_upscale_args(0, "Lanczos", 2.0)))
    gallery, infotext, progress = result[2], result[3], result[1]
    assert len(gallery) == 1 and "Done: SD upscale, 1 image" in progress
    with Image.open(gallery[0]["image"]) as upscaled:
        assert upscaled.size == (128, 128)  # 4 tiles of 64×64, redrawn and joined
    assert "SD upscale upscaler: Lanczos" in infotext and "Denoising strength: 0.5" in infotext
    # a plain call without script arguments is a plain job, as before
    plain = client.predict(api_name="/img2img", prompt="a tile", init_image=picture, steps=2, width=64, height=64, seed=4)
    assert len(plain[2]) == 1 and "Script" not in plain[3]


def test_an_unsupported_axis_is_a_clear_error(client):
    args = json.dumps({"x_type": "Sigma Churn", "x_values": "1, 2"})
    with pytest.raises(Exception) as raised:
        client.predict(api_name="/txt2img", prompt="x", steps=2, width=64, height=64, script_name="X/Y/Z plot", script_args=args)
    message = str(raised.value)
    assert "X type 'Sigma Churn' is not supported" in message and "Steps (4)" in message and "Traceback" not in message
    with pytest.raises(Exception) as raised:
        client.predict(api_name="/txt2img", prompt="x", steps=2, width=64, height=64, script_name="Curl | sh", script_args="")
    assert "Unknown script" in str(raised.value)
