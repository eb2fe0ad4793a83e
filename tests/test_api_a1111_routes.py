"""The rest of A1111's /sdapi/v1 as A1111 answers it: the full options set with per-user round trips (an admin's CLIP
skip and VAE stay server-wide), the listing routes' shapes (never a 404), cmd-flags without secrets, and the idle
progress answer webuiapi's util_wait_for_ready waits for."""

import json
import os
import time
from pathlib import Path

import pytest
from server_support import SMALL, USERS, live_server

from studio.web.a1111_options import A1111_DEFAULTS, MAX_VALUE_BYTES, options_for
from studio.web.state import MAX_USER_OPTIONS


@pytest.fixture(scope="module")
def server(engine):
    with live_server(engine, users=USERS, admins=("root",)) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_options(server):
    """Each test starts from A1111's defaults: no server-wide values, nobody's own options, everyone on tiny."""
    state = server.state
    yield
    state.server_options.clear()
    for user in USERS:
        state.update_user_options(user, {}, remove=list(state.user_options(user)))
        state.set_model(user, "tiny")


@pytest.fixture(scope="module")
def clients(server):
    made = {user: server.client(user) for user in USERS}
    yield made
    for client in made.values():
        client.close()


def _infotext(response) -> str:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])["infotexts"][0]


# ---- GET /sdapi/v1/options


def test_options_are_a1111s_full_set_with_the_studios_values(clients, engine):
    options = clients["alice"].get("/sdapi/v1/options").json()
    assert set(A1111_DEFAULTS) <= set(options) and len(options) >= 280
    for name in ("samples_save", "send_seed", "send_size", "CLIP_stop_at_last_layers", "sd_vae", "emphasis",
                 "eta_noise_seed_delta", "quicksettings_list", "sd_checkpoint_hash", "sd_lora"):
        assert name in options, name
    assert options["sd_model_checkpoint"] == "tiny" and options["samples_format"] == "png"
    assert options["CLIP_stop_at_last_layers"] == 1 and options["sd_vae"] == "Automatic"
    assert options["live_previews_enable"] is (engine.settings.preview != "off")
    assert options["show_progress_every_n_steps"] == engine.settings.preview_interval()
    assert options["outdir_txt2img_samples"] == "outputs/txt2img-images" and options["outdir_save"] == "log/images"
    text = json.dumps(options)
    for private in (str(Path(engine.settings.outputs).resolve()), str(engine.settings.cache_dir), os.getcwd(), str(Path.home())):
        assert private not in text, private


# ---- POST /sdapi/v1/options: each user's own


def test_options_round_trip_per_user(clients, server):
    alice, bob = clients["alice"], clients["bob"]
    posted = {"send_seed": False, "jpeg_quality": 95, "an_extension_option": [1, "two", {"three": 3.5}], "n_rows": 2.0}
    response = alice.post("/sdapi/v1/options", json=posted)
    assert response.status_code == 200 and response.json() is None  # A1111 answers null
    mine = alice.get("/sdapi/v1/options").json()
    assert {k: mine[k] for k in posted} == posted  # 2.0 stays 2.0: what was posted comes back
    theirs = bob.get("/sdapi/v1/options").json()
    assert theirs["send_seed"] is True and theirs["jpeg_quality"] == 80 and theirs["n_rows"] == -1
    assert "an_extension_option" not in theirs
    assert alice.post("/sdapi/v1/options", json={"send_seed": True}).status_code == 200  # the default again
    assert "send_seed" not in server.state.user_options("alice")  # ... is not kept
    assert alice.get("/sdapi/v1/options").json()["send_seed"] is True


def test_posting_back_the_whole_answer_works(clients, server):
    alice = clients["alice"]
    options = alice.get("/sdapi/v1/options").json()
    options["send_size"] = False
    assert alice.post("/sdapi/v1/options", json=options).status_code == 200
    assert alice.get("/sdapi/v1/options").json() == options
    assert server.state.user_options("alice") == {"send_size": False}  # defaults and the studio's facts are not stored


def test_unknown_model_is_422_and_nothing_is_stored(clients):
    alice = clients["alice"]
    for wanted in ("no-such-model", "/etc/passwd", "", 7):
        response = alice.post("/sdapi/v1/options", json={"sd_model_checkpoint": wanted, "send_size": False})
        assert response.status_code == 422, (wanted, response.text)
    options = alice.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == "tiny" and options["send_size"] is True
    assert alice.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny"}).status_code == 200


def test_the_studios_facts_are_not_overwritten(clients, engine):
    alice = clients["alice"]
    assert alice.post("/sdapi/v1/options", json={"samples_format": "jpg", "live_previews_enable": "yes",
                                                 "show_progress_every_n_steps": 99}).status_code == 200
    options = alice.get("/sdapi/v1/options").json()
    assert options["samples_format"] == "png" and options["live_previews_enable"] is (engine.settings.preview != "off")
    assert options["show_progress_every_n_steps"] == engine.settings.preview_interval()


@pytest.mark.parametrize(
    "body, words",
    [
        ({"bad name!": 1}, "not an option name"),
        ({"x" * 129: 1}, "not an option name"),
        ('{"a_value": NaN}', "JSON"),
        ({"a_value": "x" * (MAX_VALUE_BYTES + 1)}, "too big"),
        ({f"k{i}": i for i in range(MAX_USER_OPTIONS + 1)}, "at most"),
        ({"CLIP_stop_at_last_layers": 0}, "CLIP_stop_at_last_layers"),
        ({"CLIP_stop_at_last_layers": 1.5}, "CLIP_stop_at_last_layers"),
        ({"CLIP_stop_at_last_layers": 13}, "CLIP_stop_at_last_layers"),
        ({"CLIP_stop_at_last_layers": True}, "CLIP_stop_at_last_layers"),
        ({"sd_vae": 3}, "sd_vae"),
        ({"sd_vae": "missing.safetensors"}, "not in the VAE folder"),
    ],
)
def test_bad_options_are_422_and_change_nothing(clients, server, body, words):
    for user in ("alice", "root"):
        if isinstance(body, str):  # JSON text a Python client would not send (NaN)
            response = clients[user].post("/sdapi/v1/options", content=body, headers={"content-type": "application/json"})
        else:
            response = clients[user].post("/sdapi/v1/options", json=dict(body, send_seed=False))
        assert response.status_code == 422 and words in response.json()["detail"], (user, response.text)
        assert server.state.user_options(user) == {} and server.state.server_options == {}


def test_each_user_keeps_a_bounded_number_of_options(clients, server):
    alice = clients["alice"]
    assert alice.post("/sdapi/v1/options", json={f"first_{i}": i for i in range(400)}).status_code == 200
    response = alice.post("/sdapi/v1/options", json={f"second_{i}": i for i in range(101)})
    assert response.status_code == 422 and str(MAX_USER_OPTIONS) in response.json()["detail"]
    assert len(server.state.user_options("alice")) == 400
    assert alice.post("/sdapi/v1/options", json={f"second_{i}": i for i in range(100)}).status_code == 200
    big = {f"big_{i}": "x" * 15_000 for i in range(20)}  # each under the value limit, together over the user's
    response = alice.post("/sdapi/v1/options", json=big)
    assert response.status_code == 422 and "KiB" in response.json()["detail"]


# ---- server-wide options: an admin's for everyone, anyone else's for themselves


def test_admins_clip_skip_is_server_wide_and_applies(clients, server):
    root, carol = clients["root"], clients["carol"]
    assert root.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2.0}).status_code == 200
    assert server.state.server_options == {"CLIP_stop_at_last_layers": 2}
    for user in ("alice", "carol", "root"):
        assert clients[user].get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    assert "Clip skip: 2" in _infotext(carol.post("/sdapi/v1/txt2img", json=dict(SMALL, prompt="x", seed=3)))
    override = dict(SMALL, prompt="x", seed=3, override_settings={"CLIP_stop_at_last_layers": 1})
    assert "Clip skip" not in _infotext(carol.post("/sdapi/v1/txt2img", json=override))  # the request wins


def test_a_users_own_server_wide_option_is_theirs_only(clients, server):
    root, bob = clients["root"], clients["bob"]
    assert root.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
    assert bob.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 1, "sd_vae": "None"}).status_code == 200
    assert server.state.server_options == {"CLIP_stop_at_last_layers": 2}  # not changed by a non-admin
    assert bob.get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 1  # his own, though it is A1111's default
    assert server.state.user_options("bob") == {"CLIP_stop_at_last_layers": 1, "sd_vae": "None"}
    assert bob.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200  # the server's again
    assert server.state.user_options("bob") == {"sd_vae": "None"}  # ... so he follows the admin's value from now on
    assert clients["alice"].get("/sdapi/v1/options").json()["CLIP_stop_at_last_layers"] == 2
    assert options_for(server.state, "bob")["sd_vae"] == "None" and options_for(server.state, "alice")["sd_vae"] == "Automatic"


def test_a_users_own_clip_skip_is_their_txt2img_default(clients):
    bob = clients["bob"]
    assert bob.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 2}).status_code == 200
    assert "Clip skip: 2" in _infotext(bob.post("/sdapi/v1/txt2img", json=dict(SMALL, prompt="x", seed=4)))


# ---- the listing routes


def test_listing_routes_answer_in_a1111s_shapes(clients):
    alice = clients["alice"]
    answers = {path: alice.get("/sdapi/v1/" + path) for path in
               ("hypernetworks", "face-restorers", "latent-upscale-modes", "scripts", "script-info", "extensions")}
    assert all(r.status_code == 200 for r in answers.values()), {p: r.status_code for p, r in answers.items()}
    assert answers["hypernetworks"].json() == [] and answers["face-restorers"].json() == []
    assert answers["latent-upscale-modes"].json() == [
        {"name": "Latent"}, {"name": "Latent (antialiased)"}, {"name": "Latent (bicubic)"},
        {"name": "Latent (bicubic antialiased)"}, {"name": "Latent (nearest)"}, {"name": "Latent (nearest-exact)"}]
    assert answers["scripts"].json() == {"txt2img": ["prompt matrix", "prompts from file or textbox", "x/y/z plot"],
                                         "img2img": ["prompt matrix", "prompts from file or textbox", "sd upscale", "x/y/z plot"]}
    assert {info["name"] for info in answers["script-info"].json()} >= {"x/y/z plot", "sd upscale"}
    assert answers["extensions"].json() == []


def test_cmd_flags_are_safe(clients, server, engine):
    for user in ("alice", "root"):
        flags = clients[user].get("/sdapi/v1/cmd-flags").json()
        assert flags["api"] is True and flags["listen"] is False and flags["port"] == server.port
        assert flags["max_batch_count"] == engine.settings.max_batch_count
        secretish = ("auth", "password", "token", "secret", "key", "cert", "dir", "path", "file", "user", "ckpt", "tls")
        assert not [name for name in flags if any(word in name.lower() for word in secretish)]
        text = json.dumps(flags)
        for private in (*USERS, *USERS.values(), str(Path(engine.settings.outputs).resolve()),
                        str(engine.settings.cache_dir), os.getcwd(), str(Path.home()), "/"):
            assert private not in text, private


# ---- progress


def test_idle_progress_is_a1111s_and_webuiapi_sees_ready(clients, server):
    alice = clients["alice"]
    assert alice.post("/sdapi/v1/txt2img", json=dict(SMALL, prompt="done before the poll")).status_code == 200
    idle = alice.get("/sdapi/v1/progress").json()
    assert idle == {
        "progress": 0.0, "eta_relative": 0.0, "current_image": None, "textinfo": "Done.",  # A1111 keeps the last text
        "state": {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
                  "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0},
    }
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0  # webuiapi's util_wait_for_ready returns


def test_progress_while_a_job_is_waiting_or_running(clients, server):
    alice = clients["alice"]
    job = alice.post("/studio/api/jobs", json=dict(SMALL, prompt="long", steps=150))
    assert job.status_code in (200, 202), job.text
    try:
        busy = alice.get("/sdapi/v1/progress").json()
        assert busy["state"]["job_count"] >= 1 and busy["state"]["job"]
        assert clients["bob"].get("/sdapi/v1/progress").json()["state"]["job_count"] == 0  # alice's, not bob's
    finally:
        alice.post(f"/studio/api/jobs/{job.json()['id']}/cancel")
        deadline = time.time() + 60
        while alice.get("/sdapi/v1/progress").json()["state"]["job_count"] and time.time() < deadline:
            time.sleep(0.05)
