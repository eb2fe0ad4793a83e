"""Per-user studio settings (studio.user_settings): what a user may save, where it is kept (their own hidden file,
never another user's, never listed in History), and what it does to the jobs they start from the UI (live preview
mode and interval, file name pattern) — an explicit request value always wins."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from studio.contract import GenerationRequest
from studio.history import History
from studio.outputs import OutputStore
from studio.samplers import sampler_names
from studio.ui.streaming import Services
from studio.user_settings import MAX_FILE_BYTES, SettingsError, SettingsLimits, UserSettings, UserSettingsStore, checked

LIMITS = SettingsLimits(samplers=tuple(sampler_names()), max_steps=150, max_size=2048)


@pytest.fixture
def store(tmp_path):
    return UserSettingsStore(OutputStore(tmp_path / "outputs"))


def test_the_defaults_are_the_studios():
    assert checked({}, LIMITS) == UserSettings()
    assert UserSettings().sampler_name == "Euler a" and UserSettings().steps == 20 and UserSettings().cfg_scale == 7.0


@pytest.mark.parametrize("values, words", [
    ({"sampler_name": "Warp drive"}, "Unknown sampler"),
    ({"steps": 0}, "Steps must be 1 to 150"),
    ({"steps": 151}, "Steps must be 1 to 150"),
    ({"steps": 2.5}, "whole number"),
    ({"width": 100}, "multiple of 8 from 64 to 2048"),
    ({"height": 4096}, "multiple of 8 from 64 to 2048"),
    ({"cfg_scale": 31}, "CFG scale must be 0 to 30"),
    ({"preview": "fancy"}, "Live preview must be one of"),
    ({"preview_every": -1}, "Preview every"),
    ({"steps": "many"}, "could not convert"),
    ({"filename_pattern": "[seed]-[hash]"}, "unknown tokens ([hash])"),
    ({"filename_pattern": "x" * 201}, "too long"),
    ({"inspect": ["everything"]}, "Inside sampling: choose from attention, cfg"),
])
def test_bad_settings_are_refused_saying_what_to_change(values, words):
    with pytest.raises(SettingsError) as caught:
        checked(values, LIMITS)
    assert words in str(caught.value)


def test_the_pattern_error_lists_the_known_tokens():
    with pytest.raises(SettingsError) as caught:
        checked({"filename_pattern": "[nope]"}, LIMITS)
    assert "[seed]" in str(caught.value) and "[prompt_words]" in str(caught.value)


def test_each_user_has_their_own_saved_settings(store):
    mine = checked({"sampler_name": "DDIM", "steps": 33, "width": 512, "height": 768, "cfg_scale": 5.5, "preview": "off",
                    "preview_every": 3, "filename_pattern": "[seed]-[prompt_words]", "unknown_key": 1}, LIMITS)
    store.save("alice", mine)
    assert store.load("alice", LIMITS) == mine
    assert store.load("bob", LIMITS) is None  # never saved: the studio's defaults
    assert store.load("local", LIMITS) is None  # the single local user's file is another one
    store.forget("alice")
    assert store.load("alice", LIMITS) is None
    store.forget("alice")  # forgetting twice is fine


def test_a_broken_or_oversized_file_means_the_defaults(store):
    path = store.path("alice")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert store.load("alice", LIMITS) is None
    path.write_text(json.dumps({"steps": 9999}))  # saved by hand, out of this server's limits
    assert store.load("alice", LIMITS) is None
    path.write_text(json.dumps({"steps": 12, "pad": "x" * MAX_FILE_BYTES}))
    assert store.load("alice", LIMITS) is None
    path.write_text(json.dumps({"steps": 12}))
    assert store.load("alice", LIMITS).steps == 12


def test_the_settings_file_is_not_an_image_of_the_history(store):
    store.save("alice", UserSettings(steps=12))
    store.outputs.save_png(Image.new("RGB", (8, 8)), "x\nSteps: 2, Seed: 5, Size: 8x8", 5, owner="alice")
    entries = History(store.outputs).entries("alice")
    assert [e.relative.split("/")[-1] for e in entries] == ["00000-5.png"]


def test_a_users_saved_settings_apply_to_the_jobs_they_start_from_the_ui(store):
    store.save("alice", checked({"preview": "off", "preview_every": 4, "filename_pattern": "[seed]-[steps]",
                                 "inspect": ["attention"]}, LIMITS))
    services = Services(SimpleNamespace(), user_settings=store, settings_limits=LIMITS)
    plain = GenerationRequest("a cat")
    mine = services.with_user_settings(plain, "alice")
    assert (mine.preview, mine.preview_every, mine.filename_pattern, mine.inspect) == ("off", 4, "[seed]-[steps]", ("attention",))
    assert services.with_user_settings(plain, "bob") == plain  # bob saved nothing
    explicit = GenerationRequest("a cat", preview="taesd", preview_every=2, filename_pattern="[date]", inspect=("cfg",))
    assert services.with_user_settings(explicit, "alice") == explicit  # what the request says wins
