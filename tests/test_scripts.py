"""A1111's scripts (script_name / script_args) on the A1111 API, on the tiny model: X/Y/Z plot, Prompt matrix, Prompts
from file or textbox, SD upscale — their answers laid out as A1111 lays them out, each picture equal to the same
request run alone, and every refusal a 422 before anything runs. The value syntax and the layouts without a server."""

import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image
from server_support import SMALL, job_service, live_server, png_b64

from studio.contract import Cancelled, Finished, GenerationRequest, RequestError
from studio.metadata import parse_infotext, read_infotext
from studio.scripts import ScriptStopped, find_script, script_names
from studio.scripts.axes import SUPPORTED, find_axis, tab_labels
from studio.scripts.grids import Label, cut_tiles, join_tiles, labelled_grid, tile_layout
from studio.scripts.prompt_matrix import combinations
from studio.scripts.prompts_from_file import parse_line
from studio.scripts.values import expand_floats, expand_ints, parse_values, split_csv
from studio.scripts.xyz import AxisValues, _run_order

# ---- without a server


def test_value_syntax_lists_ranges_steps_and_counts():
    assert split_csv('cat, "dog, big" , bird') == ["cat", "dog, big", "bird"]
    assert split_csv("") == []
    assert expand_ints(["1-5"], "X", 100) == [1, 2, 3, 4, 5]
    assert expand_ints(["1-10 (+3)"], "X", 100) == [1, 4, 7, 10]
    assert expand_ints(["10-1 (-3)"], "X", 100) == [10, 7, 4]
    assert expand_ints(["1-10 [4]"], "X", 100) == [1, 4, 7, 10]
    assert expand_ints(["-1", " 7 "], "X", 100) == [-1, 7]
    assert expand_floats(["1-2 (+0.25)"], "X", 100) == [1.0, 1.25, 1.5, 1.75, 2.0]
    assert expand_floats(["0.5-1 [3]"], "X", 100) == [0.5, 0.75, 1.0]
    assert expand_floats(["7.5", "1-3"], "X", 100) == [7.5, 1.0, 2.0, 3.0]
    assert parse_values("5, 7.5", "float", "Y", 100) == [5.0, 7.5]
    assert parse_values('"a, b", c', "str", "X", 100) == ["a, b", "c"]
    assert parse_values("a, b, c", "permutations", "X", 100)[:2] == [("a", "b", "c"), ("a", "c", "b")]


@pytest.mark.parametrize("values, kind, words", [
    ("1-1000000000", "int", "more than 100"),
    ("1-10 [500]", "int", "more than 100"),
    ("1-5 (+0)", "int", "step of 0"),
    ("seven", "int", "'seven' is not a whole number"),
    ("7.5", "int", "not a whole number"),
    ("abc", "float", "'abc' is not a number"),
    ("0-1000 (+0.001)", "float", "more than 100"),
    ("a,b,c,d,e,f", "permutations", "720 orders"),
])
def test_value_syntax_refusals(values, kind, words):
    with pytest.raises(RequestError, match=words):
        parse_values(values, kind, "X values", 100)


def test_axis_types_are_a1111_indices_per_tab():
    assert tab_labels(False)[:8] == ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale", "Prompt S/R"]
    assert tab_labels(True)[6] == "Image CFG Scale" and "Hires steps" not in tab_labels(True)
    assert tab_labels(False)[-1] == tab_labels(True)[-1] == "Size"
    assert find_axis(4, False, "X").label == "Steps" and find_axis("cfg scale", True, "Y").label == "CFG Scale"
    assert find_axis(tab_labels(True).index("Denoising"), True, "X").label == "Denoising"
    with pytest.raises(RequestError, match="'Image CFG Scale' is not supported"):
        find_axis(6, True, "X")
    with pytest.raises(RequestError, match="not an axis type of txt2img"):
        find_axis(99, False, "X")


def test_prompt_matrix_combinations_and_prompt_file_lines():
    assert combinations("a cat|red|hat", False, ", ") == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat"]
    assert combinations("a cat|red|hat", True, " ")[3] == "red hat a cat"
    assert parse_line("a plain prompt, with -- dashes") == {"prompt": "a plain prompt, with -- dashes"}
    assert parse_line('--prompt a red fox --steps 3 --cfg_scale 5 --negative_prompt "blur, noise"') == \
        {"prompt": "a red fox", "steps": 3, "cfg_scale": 5.0, "negative_prompt": "blur, noise"}
    assert parse_line("--n_iter 2 --tiling true") == {"batch_count": 2, "tiling": True}
    for line, words in [("--outpath_samples /tmp/x", "--outpath_samples is not allowed"), ("--steps", "needs a value"),
                        ("--steps many", "not a valid value"), ("--prompt 'open", "cannot read")]:
        with pytest.raises(RequestError, match=words):
            parse_line(line)


def test_grid_layout_and_tiles():
    cells = [Image.new("RGB", (64, 64), c) for c in ("red", "green", "blue", "white")]
    grid = labelled_grid(cells, 2, [[Label("Steps: 1")], [Label("Steps: 2")]], [[Label("CFG: 5")], [Label("CFG: 7")]], margin=4)
    assert grid.width == 64 * 3 // 4 + 2 * 64 + 4 and grid.height > 2 * 64 + 4
    assert grid.getpixel((grid.width - 1, grid.height - 1)) == (255, 255, 255)  # the white cell, bottom right
    assert labelled_grid(cells, 2, [[Label("a")], [Label("b")]], [[Label("")], [Label("")]], legend=False).size == (128, 128)
    layout = tile_layout(128, 96, 64, 64, 16)
    assert layout.count == 3 * 2 and all(x + 64 <= 128 for _, xs in layout.rows for x in xs)
    picture = Image.effect_noise((128, 96), 40).convert("RGB")
    assert join_tiles(layout, cut_tiles(picture, layout)).tobytes() == picture.tobytes()
    assert join_tiles(tile_layout(128, 128, 64, 64, 0), cut_tiles(picture.resize((128, 128)), tile_layout(128, 128, 64, 64, 0))).size == (128, 128)


def test_registry_names():
    assert script_names(False) == ["prompt matrix", "prompts from file or textbox", "x/y/z plot"]
    assert script_names(True) == ["prompt matrix", "prompts from file or textbox", "sd upscale", "x/y/z plot"]
    assert find_script("X/Y/Z Plot", False).title == "X/Y/Z plot"
    with pytest.raises(RequestError, match="not a txt2img script"):
        find_script("SD upscale", False)


# ---- on the API


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine, users=None) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with server.client() as client:
        yield client


def _image(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _pngs(engine) -> int:
    return len(list(engine.outputs.root.rglob("*.png")))


def _xyz(**axes) -> list:
    args = dict(x_type=0, x_values="", x_values_dropdown=[], y_type=0, y_values="", y_values_dropdown=[], z_type=0,
                z_values="", z_values_dropdown=[], draw_legend=True, include_lone_images=True, include_sub_grids=False,
                no_fixed_seeds=False, vary_seeds_x=False, vary_seeds_y=False, vary_seeds_z=False, margin_size=0,
                csv_mode=False)
    args.update(axes)
    return list(args.values())


def _post(client, body, path="/sdapi/v1/txt2img"):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    return data, json.loads(data["info"])


def test_xyz_steps_by_cfg_grid_and_cells_equal_to_single_runs(client):
    script_args = _xyz(x_type=4, x_values="2-3", y_type=6, y_values="5, 7.5", margin_size=4)
    data, info = _post(client, dict(SMALL, prompt="a red fox", seed=77, script_name="X/Y/Z plot", script_args=script_args))
    assert len(data["images"]) == 5 and len(info["infotexts"]) == 5 and info["index_of_first_image"] == 1
    grid, cells = _image(data["images"][0]), [_image(b) for b in data["images"][1:]]
    assert grid.width == 64 * 3 // 4 + 2 * 64 + 4 and grid.height > 2 * 64 + 4
    assert "Script: X/Y/Z plot" in info["infotexts"][0] and "X Type: Steps" in info["infotexts"][0]
    assert read_infotext(grid) == info["infotexts"][0]
    expected = [(2, 5.0), (3, 5.0), (2, 7.5), (3, 7.5)]  # X across, then Y down (A1111's cell order)
    for cell, text, (steps, cfg) in zip(cells, info["infotexts"][1:], expected):
        params = parse_infotext(text)
        assert (int(params["Steps"]), float(params["CFG scale"]), params["Seed"]) == (steps, cfg, "77")
        assert read_infotext(cell) == text
    assert info["all_seeds"] == [77] * 5
    single = client.post("/sdapi/v1/txt2img", json=dict(SMALL, prompt="a red fox", seed=77, steps=3, cfg_scale=7.5)).json()
    assert _image(single["images"][0]).tobytes() == cells[3].tobytes()
    assert grid.crop((48, grid.height - 64, 48 + 64, grid.height)).tobytes() == cells[2].convert("RGB").tobytes()


def test_xyz_prompt_sr_random_seed_fixed_once_and_grids_only(client):
    script_args = _xyz(x_type="Prompt S/R", x_values='red, "blue, shiny"', include_lone_images=False,
                       include_sub_grids=True)
    data, info = _post(client, dict(SMALL, prompt="a red fox", seed=-1, script_name="x/y/z plot", script_args=script_args))
    assert len(data["images"]) == 2 and info["index_of_first_image"] == 2  # the grid and its one Z grid
    script_args[10] = True  # include_lone_images
    data, info = _post(client, dict(SMALL, prompt="a red fox", seed=-1, script_name="x/y/z plot", script_args=script_args))
    assert [t.split("\n")[0] for t in info["infotexts"][2:]] == ["a red fox", "a blue, shiny fox"]
    assert len(set(info["all_seeds"])) == 1 and info["all_seeds"][0] != -1


def test_xyz_size_and_checkpoint_axes(client):
    script_args = _xyz(x_type="Size", x_values="64x64, 128x64", y_type=11, y_values_dropdown=["tiny"])
    data, info = _post(client, dict(SMALL, prompt="a red fox", seed=8, script_name="x/y/z plot", script_args=script_args))
    grid, cells = _image(data["images"][0]), [_image(b) for b in data["images"][1:]]
    assert [c.size for c in cells] == [(64, 64), (128, 64)]
    assert grid.width == 128 * 3 // 4 + 2 * 128 and grid.height > 64  # cells as big as the biggest picture
    assert "Y Type: Checkpoint name" in info["infotexts"][0] and "Model: tiny" in info["infotexts"][1]


@pytest.mark.parametrize("body, words", [
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type=13, x_values="1, 2")), "'Sigma Churn' is not supported"),
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type=7, x_values="cat, dog")), "did not find 'cat'"),
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type=4, x_values="1-11", y_type=6, y_values="1-11")), "121 images"),
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type=4, x_values="2, 500")), "steps must be between"),
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type=9, x_values="Euler, Nope")), "Unknown sampler"),
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type="Size", x_values="64x64, big")), "'big' is not a size"),
    (dict(script_name="x/y/z plot", script_args=_xyz(x_type=4, x_values="")), "X values are empty"),
    (dict(script_name="x/y/z plot", script_args=[4, "2"] + [0] * 17), "takes at most 18 script_args"),
    (dict(script_name="prompt matrix", prompt="a|b|c|d|e|f|g|h"), "128 images"),
    (dict(script_name="prompts from file or textbox", script_args=[False, False, "start", "a cat\n--outpath_samples /tmp/x"]),
     "line 2: option --outpath_samples is not allowed"),
    (dict(script_name="prompts from file or textbox", script_args=[False, False, "start", "--steps 2 --n_iter 60\n--n_iter 60"]),
     "120 images"),
    (dict(script_name="no such script"), "Scripts for txt2img: prompt matrix, prompts from file or textbox, x/y/z plot"),
    (dict(script_name="sd upscale"), "not a txt2img script"),
])
def test_refusals_are_422_before_anything_runs(client, engine, body, words):
    before = _pngs(engine)
    response = client.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a red fox", **body})
    assert response.status_code == 422 and words in response.json()["detail"], response.text
    assert _pngs(engine) == before


def test_prompt_matrix(client):
    body = dict(SMALL, prompt="a cat|red|hat", seed=5, script_name="Prompt matrix",
                script_args=[False, False, "positive", "comma", 2])
    data, info = _post(client, body)
    assert len(data["images"]) == 5
    assert [t.split("\n")[0] for t in info["infotexts"][1:]] == ["a cat", "a cat, red", "a cat, hat", "a cat, red, hat"]
    assert info["all_seeds"] == [5] * 5 and info["all_prompts"][2] == "a cat, red"
    grid = _image(data["images"][0])
    assert grid.width == 64 * 3 // 4 + 2 * 64 + 2 and grid.height > 2 * 64 + 2
    body["script_args"] = [True, True, "positive", "space", 0]
    _, info = _post(client, body)
    assert info["all_seeds"][1:] == [5, 6, 7, 8] and info["infotexts"][4].startswith("red hat a cat")


def test_prompts_from_file(client):
    text = "a cat\n--prompt a dog --steps 3 --cfg_scale 4.5\n\n   \na bird"
    body = dict(SMALL, prompt="photo", seed=40, script_name="prompts from file or textbox",
                script_args=[True, False, "end", text])
    data, info = _post(client, body)
    assert len(data["images"]) == 3 and info["index_of_first_image"] == 0
    params = [parse_infotext(t) for t in info["infotexts"]]
    assert [p["Prompt"] for p in params] == ["photo a cat", "photo a dog", "photo a bird"]
    assert [p["Steps"] for p in params] == ["2", "3", "2"] and params[1]["CFG scale"] == "4.5"
    assert info["all_seeds"] == [40, 41, 42]  # checkbox_iterate: the seed moves on after each line


def test_sd_upscale(client):
    before = client.get("/studio/api/history").json()["total"]
    body = dict(SMALL, prompt="detailed", seed=3, denoising_strength=0.5, init_images=[png_b64((64, 64))],
                script_name="SD upscale", script_args=[None, 32, 1, 2.0])  # upscaler 1: Lanczos
    data, info = _post(client, body, "/sdapi/v1/img2img")
    assert len(data["images"]) == 1
    assert client.get("/studio/api/history").json()["total"] == before + 1  # the upscaled picture, not its 9 tiles
    result = _image(data["images"][0])
    assert result.size == (128, 128)
    assert "SD upscale upscaler: Lanczos" in info["infotexts"][0] and "SD upscale overlap: 32" in info["infotexts"][0]
    body["script_args"] = [None, 0, "lanczos", 1.0]  # an upscaler by name; one tile, no overlap
    data, info = _post(client, body, "/sdapi/v1/img2img")
    assert _image(data["images"][0]).size == (64, 64) and "SD upscale upscaler: Lanczos" in info["infotexts"][0]
    body.update(width=128, height=128, script_args=[None, 32, "Lanczos", 1.0])
    response = client.post("/sdapi/v1/img2img", json=body)
    assert response.status_code == 422 and "must fit in the upscaled picture" in response.json()["detail"]


def test_scripts_listings(client):
    assert client.get("/sdapi/v1/scripts").json() == {
        "txt2img": ["prompt matrix", "prompts from file or textbox", "x/y/z plot"],
        "img2img": ["prompt matrix", "prompts from file or textbox", "sd upscale", "x/y/z plot"]}
    info = client.get("/sdapi/v1/script-info").json()
    assert len(info) == 7 and {e["name"] for e in info if e["is_img2img"]} == {"prompt matrix", "prompts from file or textbox", "sd upscale", "x/y/z plot"}
    xyz = next(e for e in info if e["name"] == "x/y/z plot" and not e["is_img2img"])
    assert xyz["is_alwayson"] is False and len(xyz["args"]) == 18
    assert set(xyz["args"][0]) == {"label", "value", "minimum", "maximum", "step", "choices"}
    assert xyz["args"][0]["choices"][4] == "Steps"
    upscale = next(e for e in info if e["name"] == "sd upscale")
    assert upscale["args"][2]["choices"][:3] == ["None", "Lanczos", "Nearest"]


def test_xyz_plans_seeds_and_run_order(engine):
    service = job_service(engine)
    request = GenerationRequest("a fox", steps=2, width=64, height=64, sampler_name="Euler", seed=10, batch_size=2)
    args = _xyz(x_type=4, x_values="2-4", y_type=6, y_values="5, 6", vary_seeds_x=True, vary_seeds_y=True)
    plan = service.plan_script("x/y/z plot", request, args, "local")
    assert [r.seed for r in plan.requests] == [10, 11, 12, 13, 14, 15] and {r.batch_size for r in plan.requests} == {1}
    assert [(r.steps, r.cfg_scale) for r in plan.requests[:4]] == [(2, 5.0), (3, 5.0), (4, 5.0), (2, 6.0)]
    assert plan.notes and "batch size" in plan.notes[0]
    random_seed = service.plan_script("x/y/z plot", GenerationRequest("a fox", seed=-1), _xyz(x_type=4, x_values="2, 3"), "local")
    assert len({r.seed for r in random_seed.requests}) == 1 and random_seed.requests[0].seed >= 0
    kept = service.plan_script("x/y/z plot", GenerationRequest("a fox", seed=-1), _xyz(x_type=4, x_values="2, 3", no_fixed_seeds=True), "local")
    assert {r.seed for r in kept.requests} == {-1}
    checkpoints, steps, nothing = (AxisValues(letter, SUPPORTED[label], "", values) for letter, label, values in
                                   (("X", "Checkpoint name", ["a", "b"]), ("Y", "Steps", [1, 2]), ("Z", "Nothing", [None])))
    assert _run_order((checkpoints, steps, nothing)) == [0, 2, 1, 3]  # one checkpoint's cells, then the other's
    assert _run_order((steps, checkpoints, nothing)) == [0, 1, 2, 3]


def _when_running(engine, prompt: str, then) -> threading.Thread:
    """Call then() once a job with this prompt is running."""
    def watch():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(job.request.prompt == prompt for job in list(engine.running_jobs)):
                then()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _settled(service, user: str) -> list:
    deadline = time.monotonic() + 20
    while service.active_jobs(user) and time.monotonic() < deadline:
        time.sleep(0.05)
    return service.active_jobs(user)


def test_a_stopped_script_cancels_its_jobs(engine):
    service = job_service(engine)
    prompt = f"a slow plot {time.time()}"
    request = GenerationRequest(prompt, steps=150, width=64, height=64, sampler_name="Euler", seed=1)
    plan = service.plan_script("x/y/z plot", request, _xyz(x_type=1, x_values="1-6"), "local")
    assert len(plan.requests) == 6
    stop = threading.Event()
    _when_running(engine, prompt, stop.set)
    with pytest.raises(ScriptStopped):
        service.run_script(plan, "local", stop=stop)
    assert _settled(service, "local") == []
    ours = [job for job in service.jobs("local") if job.request.prompt == prompt]
    assert len(ours) == 2  # the window: one running, one queued; the other four never submitted
    assert all(isinstance(job.wait(timeout=20), Cancelled) for job in ours)


def test_interrupt_ends_the_script_with_the_pictures_so_far(server, engine, client):
    prompt = f"an interrupted plot {time.time()}"
    body = dict(SMALL, prompt=prompt, steps=150, script_name="x/y/z plot", script_args=_xyz(x_type=1, x_values="1-4"))

    def interrupt():
        with server.client() as other:
            other.post("/sdapi/v1/interrupt")

    _when_running(engine, prompt, interrupt)
    data, info = _post(client, body)
    assert info["interrupted"] is True
    # the grid (blanks for the cells that never ran) and the cell(s) that ran: one, or two sharing a batch
    assert len(data["images"]) in (2, 3) and len(info["infotexts"]) == len(data["images"])
    assert _image(data["images"][0]).width == 4 * 64  # four cells across; no Y labels, so no left column
    assert _settled(server.state.service, "local") == []


def test_a_client_that_goes_away_cancels_the_whole_script(server, engine):
    prompt = f"nobody waits for this plot {time.time()}"
    before = _pngs(engine)
    body = dict(SMALL, prompt=prompt, steps=150, script_name="x/y/z plot", script_args=_xyz(x_type=1, x_values="1-6"))
    with server.client(timeout=httpx.Timeout(5.0, read=1.0)) as leaving:
        with pytest.raises(httpx.ReadTimeout):
            leaving.post("/sdapi/v1/txt2img", json=body)
    service = server.state.service
    assert _settled(service, "local") == []
    time.sleep(0.5)  # the saver thread would have written by now
    assert _pngs(engine) - before <= 1  # at most the cell that finished before the client left; no grid
    ours = [job for job in service.jobs("local") if job.request.prompt == prompt]
    assert 1 <= len(ours) <= 3 and all(isinstance(job.wait(timeout=20), (Cancelled, Finished)) for job in ours)
    assert isinstance(ours[0].result, Cancelled)  # the newest: cancelled when the client left
