"""Per-request output options a user's studio settings send: live previews (mode and interval) and the saved files'
name pattern (A1111's samples_filename_pattern) — and every reader of output names accepting only safe ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from studio.config import Settings
from studio.contract import Finished, GenerationRequest, Preview, RequestError, Step
from studio.dispatch import BatchPolicy
from studio.history import FILE_RE, History, safe_output_file
from studio.jobs import Job
from studio.metadata import build_infotext
from studio.outputs import FILENAME_TOKENS, OutputStore, expand_filename_pattern, filename_fields
from studio.validation import job_preview, validate
from tests.helpers import collect

TINY = dict(steps=2, width=64, height=64, sampler_name="Euler")
INFOTEXT = build_infotext("a red fox, (snow:1.2)", "blurry", {"Steps": 6, "Sampler": "DPM++ 2M", "CFG scale": 7.5,
                                                             "Seed": 42, "Size": "64x96", "Model": "tiny"})
NOW = dt.datetime(2024, 5, 6, 7, 8, 9)


# ---- the file name pattern


def _fields(**changes) -> dict:
    return {**filename_fields(INFOTEXT, 42, "a red fox", NOW.timestamp(), now=NOW), **changes}


def test_every_token_expands_from_the_infotext_the_request_and_the_clock():
    fields = _fields()
    expected = {
        "seed": "42", "steps": "6", "cfg": "7.5", "width": "64", "height": "96", "sampler": "DPM++ 2M", "model_name": "tiny",
        "prompt": "a_red_fox,_(snow_1.2)", "prompt_spaces": "a red fox, (snow_1.2)", "prompt_words": "a red fox snow 1 2",
        "prompt_no_styles": "a red fox", "date": "2024-05-06", "datetime": "20240506070809", "job_timestamp": "20240506070809",
    }
    assert set(expected) == set(FILENAME_TOKENS)
    for token, value in expected.items():
        assert expand_filename_pattern(f"[{token}]", fields) == value, token
    assert expand_filename_pattern("[SEED]-[Model_Name]", fields) == "42-tiny"  # A1111's tokens ignore case


def test_an_expanded_name_is_cut_down_to_safe_characters():
    fields = _fields()
    cases = {
        "../../etc/passwd": "etc_passwd",
        ".hidden": "hidden",
        "a/b\\c:d*e?f\"g<h>i|j": "a_b_c_d_e_f_g_h_i_j",
        "nul\x00byte\nnewline": "nul_byte_newline",
        "dots...here..": "dots.here",
        "  spaced  ": "spaced",
        "日本語 ü [seed]": "日本語 ü 42",
        "": "42",  # never empty: the seed
        "///": "42",
        "[prompt_no_styles]": "a red fox",
        "[unknown]": "unknown",  # only text here (validation refuses it); "[" and "]" are not kept
    }
    for pattern, expected in cases.items():
        assert expand_filename_pattern(pattern, fields) == expected, pattern
    long = expand_filename_pattern("x" * 500, fields)
    assert long == "x" * 120
    wide = expand_filename_pattern("語" * 120, fields)
    assert len(wide.encode()) <= 200 and set(wide) == {"語"}
    assert expand_filename_pattern("[prompt]", _fields(prompt="", seed=7)) == "7"


def test_saved_names_keep_their_number_and_every_reader_accepts_them(tmp_path):
    store = OutputStore(tmp_path, clock=lambda: dt.date(2024, 5, 6))
    image = Image.new("RGB", (8, 8))
    plain = store.save_png(image, INFOTEXT, 42, owner="ann")
    named = store.save_png(image, INFOTEXT, 42, owner="ann", pattern="[model_name] ([sampler]) [prompt_spaces]")
    hostile = store.save_png(image, INFOTEXT, 42, owner="ann", pattern="../[seed]/.x")
    assert plain.name == "00000-42.png"
    assert named.name == "00001-tiny (DPM++ 2M) a red fox, (snow_1.2).png"
    assert hostile.name == "00002-42_.x.png" and hostile.parent == plain.parent
    for path in (plain, named, hostile):
        assert FILE_RE.match(path.name), path.name
    entries = History(store).entries("ann")
    assert [e.path.name for e in entries] == [hostile.name, named.name, plain.name]
    assert all(e.seed == 42 for e in entries)  # from the infotext, whatever the name


def test_safe_output_file_refuses_traversal_hidden_files_nul_and_other_users(tmp_path):
    store = OutputStore(tmp_path, clock=lambda: dt.date(2024, 5, 6))
    mine = store.save_png(Image.new("RGB", (8, 8)), INFOTEXT, 42, owner="ann", pattern="[prompt_spaces]")
    day = "2024-05-06"
    assert safe_output_file(store, "ann", f"{day}/{mine.name}") == mine.resolve()
    for odd in (".00003-1.png", "00001-a..b.png", "00001-..png", "00001-.x.png"):  # never written by save_png
        (store.day_folder("ann") / odd).write_bytes(mine.read_bytes())
    for relative in (f"{day}/../{day}/{mine.name}", f"../ann/{day}/{mine.name}", f"{day}/00001-a..b.png",
                     f"{day}/00001-..png", f"{day}/.00003-1.png", f"{day}/00001-.x.png", f"{day}/00001-a/b.png",
                     f"{day}/{mine.name}\x00", f"{day}/00001-a\x00b.png", f"{day}/{mine.name}\n", f"{day}/{mine.name}/x",
                     f"{day}\n/{mine.name}", f"/{day}/{mine.name}", mine.name):
        assert safe_output_file(store, "ann", relative) is None, repr(relative)
    assert safe_output_file(store, "ben", f"{day}/{mine.name}") is None  # looked up in ben's folder only


# ---- validation and the preview rule


@pytest.mark.parametrize("fields, message", [
    (dict(preview="fast"), "preview must be one of latent, taesd, vae, off"),
    (dict(preview=["off"]), "preview must be one of"),
    (dict(preview_every=0), "preview_every must be between 1 and 1000"),
    (dict(preview_every=1001), "preview_every must be between 1 and 1000"),
    (dict(preview_every="3"), "preview_every must be a whole number"),
    (dict(filename_pattern="[seed]-[fox]"), "unknown [fox]; the known tokens are [seed] [steps]"),
    (dict(filename_pattern="[datetime<%Y>]"), "unknown [datetime<%Y>]"),
    (dict(filename_pattern=3), "filename_pattern must be text"),
    (dict(filename_pattern="x" * 301), "filename_pattern must be text of at most 300"),
])
def test_bad_output_options_are_refused_with_a_clear_message(fields, message):
    with pytest.raises(RequestError) as refused:
        validate(GenerationRequest("x", **fields), Settings())
    assert message in str(refused.value)


def test_good_output_options_pass():
    for fields in (dict(preview="off"), dict(preview="vae", preview_every=1000), dict(filename_pattern="[Seed] [date] x")):
        validate(GenerationRequest("x", **fields), Settings())


def test_a_jobs_previews_are_its_own_else_the_servers():
    server = Settings(preview="taesd")
    assert job_preview(GenerationRequest("x"), server) == ("taesd", 1)
    assert job_preview(GenerationRequest("x", preview="vae"), server) == ("vae", 5)  # the full VAE: every 5th by default
    assert job_preview(GenerationRequest("x", preview="vae", preview_every=2), server) == ("vae", 2)
    assert job_preview(GenerationRequest("x"), Settings(preview="vae")) == ("vae", 5)
    assert job_preview(GenerationRequest("x", preview="latent"), Settings(preview="vae", preview_every=3)) == ("latent", 3)


def test_jobs_with_other_previews_do_not_share_a_batch():
    plain = GenerationRequest("x", **TINY)
    for settings in (None, Settings(preview="latent")):
        policy = BatchPolicy(enabled=True, max_batch=4, default_model="tiny", settings=settings)
        assert policy.key(plain) == policy.key(replace(plain, prompt="y"))
        for other in (replace(plain, preview="off"), replace(plain, preview="taesd"), replace(plain, preview_every=3)):
            assert policy.key(other) != policy.key(plain), (settings, other)
    # Knowing the server's settings, asking for what it does anyway changes nothing.
    policy = BatchPolicy(enabled=True, max_batch=4, default_model="tiny", settings=Settings(preview="latent"))
    assert policy.key(replace(plain, preview="latent", preview_every=1)) == policy.key(plain)


# ---- on the engine


def test_a_job_with_previews_off_gets_none_while_another_gets_them(engine):
    blocker = engine.submit(GenerationRequest("blocker", seed=1, steps=20, width=64, height=64), owner="cat")
    quiet = engine.submit(GenerationRequest("quiet", seed=2, preview="off", **dict(TINY, steps=4)), owner="ann")
    shown = engine.submit(GenerationRequest("shown", seed=3, **dict(TINY, steps=4)), owner="ben")
    events = {job: collect(job) for job in (blocker, quiet, shown)}
    assert isinstance(events[quiet][-1], Finished) and isinstance(events[shown][-1], Finished)
    assert not any(isinstance(e, Preview) for e in events[quiet]) and quiet.step_frames == []
    assert [e.step for e in events[quiet] if isinstance(e, Step)] == [1, 2, 3, 4]  # progress still flows
    assert any(isinstance(e, Preview) for e in events[shown]) and [f.step for f in shown.step_frames] == [1, 2, 3, 4]


def test_preview_every_sets_the_steps_that_get_frames(engine):
    job = engine.submit(GenerationRequest("every third", seed=5, preview_every=3, **dict(TINY, steps=6)))
    events = collect(job)
    assert [f.step for f in job.step_frames] == [3, 6]
    assert [e.step for e in events if isinstance(e, Preview)] == [3, 6]


def test_a_job_saves_under_its_file_name_pattern(engine):
    pattern = "[seed] [prompt_spaces] [job_timestamp]"
    result = engine.generate(GenerationRequest("a (small) fox", seed=11, filename_pattern=pattern, **TINY), owner="ann")
    assert isinstance(result, Finished)
    [saved] = result.images
    path = Path(saved.path)
    assert re.fullmatch(r"[0-9]{5}-11 a \(small\) fox [0-9]{14}\.png", path.name), path.name
    entry = History(engine.outputs).find("ann", f"{path.parent.name}/{path.name}")
    assert entry is not None and entry.seed == 11


# ---- the web side


def test_the_a1111_override_settings_set_the_pattern_and_the_preview_period():
    from studio.web.a1111 import Txt2ImgBody, _saving_and_previews

    def chosen(**override):
        return _saving_and_previews(Txt2ImgBody(prompt="x", override_settings=override))

    assert chosen() == {}
    assert chosen(samples_filename_pattern="[seed]-[model_name]", show_progress_every_n_steps=4) == dict(
        filename_pattern="[seed]-[model_name]", preview_every=4)
    assert chosen(show_progress_every_n_steps=-1) == dict(preview="off")  # A1111: no live previews
    assert chosen(show_progress_every_n_steps=0) == dict(preview_every=1)
    for bad in (dict(samples_filename_pattern=3), dict(show_progress_every_n_steps="2"), dict(show_progress_every_n_steps=-2),
                dict(show_progress_every_n_steps=True)):
        with pytest.raises(RequestError):
            chosen(**bad)


def test_a_patterned_result_url_is_the_owners_only_and_is_quoted(tmp_path):
    from studio.web.gradio_gate import GradioGate

    store = OutputStore(tmp_path, clock=lambda: dt.date(2024, 5, 6))
    saved = store.save_png(Image.new("RGB", (8, 8)), INFOTEXT, 42, owner="ann", pattern="[prompt_spaces] 語")
    relative = f"2024-05-06/{saved.name}"
    url = "http://studio.test/studio/files/" + quote(relative)
    gate = GradioGate(None, None, Settings(), lambda user, host: False, store)
    scope = {"headers": [(b"host", b"studio.test")]}
    assert gate._own_result("ann", url, scope)
    assert not gate._own_result("ben", url, scope)
    for bad in ("2024-05-06/..%2F..%2Fben%2F2024-05-06%2F00000-1.png", quote(relative) + "%00", "%2e%2e/" + quote(relative)):
        assert not gate._own_result("ann", "http://studio.test/studio/files/" + bad, scope), bad

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(gate._serve_file("ann", url, scope, None, send))  # gradio_client's file=<result URL>
    location = dict(sent[0]["headers"])[b"location"].decode("ascii")
    assert sent[0]["status"] == 307 and location == "/studio/files/" + quote(relative)


def test_the_files_route_serves_a_patterned_name_to_its_owner_only(engine):
    from tests.server_support import SMALL, live_server

    with live_server(engine, admins=()) as server, server.client("alice") as alice, server.client("bob") as bob:
        body = dict(SMALL, prompt="a (tiny) fox", seed=12,
                    override_settings={"samples_filename_pattern": "[prompt_spaces], [seed]", "show_progress_every_n_steps": 1})
        png = alice.post("/sdapi/v1/txt2img", json=body)
        assert png.status_code == 200, png.text
        [item] = [i for i in alice.get("/studio/api/history").json()["items"] if i["seed"] == 12]
        assert item["file"].endswith("-a (tiny) fox, 12.png") and item["url"] == "/studio/files/" + quote(item["file"])
        assert alice.get(item["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
        assert bob.get(item["url"]).status_code == 404
        refused = alice.post("/sdapi/v1/txt2img", json=dict(body, override_settings={"samples_filename_pattern": "[nope]"}))
        assert refused.status_code == 422 and "the known tokens are [seed]" in refused.text
