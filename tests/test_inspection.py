"""Seeing inside a job's sampling (request "inspect"): the capture leaves the image as it was, follows every step,
takes CFG apart (and has nothing to take apart at CFG 1), lists the prompt's words with their maps, gives the noise
levels one per step; the routes answer the owner only; the img2img start follows the denoising strength. The maps'
meaning is checked on the demo model (tests/test_demo_model.py); here, the tiny model's plumbing."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from server_support import header_user_client, job_service

from studio.contract import Finished, GenerationRequest
from studio.inspected import Token, words_of
from studio.inspection import forward_diffused, planned_schedule
from studio.jobs import JobStore
from studio.web.frames import build_frames_router
from studio.web.inspect_routes import build_inspect_router

STEPS = 5
PROMPT = "a red circle on a white background"


def _run(engine, owner: str = "alice", **options):
    fields = dict(steps=STEPS, width=64, height=64, seed=3, cfg_scale=7.0)
    fields.update(options)
    job = engine.submit(GenerationRequest(fields.pop("prompt", PROMPT), **fields), owner=owner)
    result = job.wait(120)
    assert isinstance(result, Finished), result
    return job, np.asarray(Image.open(result.images[0].path).convert("RGB"))


@pytest.fixture(scope="module")
def inspected_job(engine):
    return _run(engine, inspect=("attention", "cfg"))


def test_inspecting_leaves_the_image_as_it_was(engine, inspected_job):
    _job, picture = inspected_job
    _plain_job, plain = _run(engine)
    assert np.array_equal(picture, plain)


def test_every_step_is_captured(inspected_job):
    job, _ = inspected_job
    inspected = job.inspection
    assert inspected.steps == STEPS
    assert inspected.attention.shape[:2] == (STEPS, 77)  # one map per context token, per step
    assert len(inspected.cfg) == STEPS
    assert inspected.start.shape == (64, 64, 3)


def test_the_prompts_words_are_listed_where_the_unet_sees_them(inspected_job):
    job, _ = inspected_job
    words = job.inspection.words
    assert [w.text for w in words] == PROMPT.split()
    assert [w.positions for w in words] == [[i] for i in range(1, 8)]  # after the start token


def test_words_merge_their_tokens_and_embeddings_count_as_one():
    tokens = [Token(1, 2353, "water</w>", 1.0), Token(2, 1674, "col", 1.2), Token(3, 1170, "our</w>", 1.2),
              Token(4, 0, "!", 1.0, "style"), Token(5, 0, "!", 1.0, "style"), Token(6, 2368, "cat</w>", 0.9)]
    words = words_of(tokens)
    assert [(w.text, w.positions, w.weight, w.embedding) for w in words] == [
        ("water", [1], 1.0, False), ("colour", [2, 3], 1.2, False), ("style", [4, 5], 1.0, True), ("cat", [6], 0.9, False)]
    assert [w.index for w in words] == [0, 1, 2, 3]


def test_guidance_is_taken_apart_and_equals_the_conditional_at_cfg_1(engine, inspected_job):
    job, _ = inspected_job
    step = job.inspection.cfg[2]
    assert step["uncond"] is not None
    assert not np.array_equal(step["guided"], step["cond"])  # (how much, on the demo model: test_demo_model.py)

    plain, _ = _run(engine, cfg_scale=1.0, inspect=("cfg",))
    for step in plain.inspection.cfg:
        assert step["uncond"] is None  # at CFG 1 the pipeline makes no unconditional prediction
        assert np.array_equal(step["guided"], step["cond"])
    assert plain.inspection.attention is None  # only what was asked


@pytest.mark.parametrize("sampler,schedule", [("Euler a", None), ("DPM++ 2M", "Karras"), ("DDIM", None), ("Heun", None)])
def test_the_noise_schedule_has_one_falling_sigma_per_step(engine, sampler, schedule):
    job, _ = _run(engine, sampler_name=sampler, scheduler=schedule, inspect=("cfg",), steps=6)
    sigmas = job.inspection.sigmas
    assert len(sigmas) == len(job.inspection.timesteps) == 6
    assert all(a > b for a, b in zip(sigmas, sigmas[1:])), sigmas


def test_a_planned_schedule_matches_the_one_that_ran(engine):
    from studio.pipelines import make_scheduler
    from studio.samplers import find_sampler

    job, _ = _run(engine, sampler_name="Euler", inspect=("cfg",), steps=6)
    model = engine.models.get(engine.current_model)
    planned = planned_schedule(make_scheduler(find_sampler("Euler"), model.scheduler_config), 6)
    assert planned["timesteps"] == pytest.approx(job.inspection.timesteps)
    assert planned["sigmas"] == pytest.approx(job.inspection.sigmas)


def test_the_strength_view_starts_from_the_input_at_0_and_from_noise_at_1(engine):
    from studio.pipelines import make_scheduler
    from studio.samplers import find_sampler

    model = engine.models.get(engine.current_model)
    scheduler = make_scheduler(find_sampler("Euler"), model.scheduler_config)
    latents, noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randn(1, 4, 8, 8)
    start, steps = forward_diffused(scheduler, latents, noise, 0.0, 20)
    assert steps == 0 and torch.equal(start, latents)
    start, steps = forward_diffused(scheduler, latents, noise, 0.5, 20)
    assert steps == 10
    start, steps = forward_diffused(scheduler, latents, noise, 1.0, 20)
    assert steps == 20
    correlation = lambda a, b: float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])  # noqa: E731
    assert correlation(start, noise) > 0.99 and abs(correlation(start, latents)) < 0.3


def test_an_img2img_job_runs_the_steps_its_strength_gives(engine):
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    for strength in (0.3, 1.0):
        job, _ = _run(engine, init_image=source, denoising_strength=strength, inspect=("cfg",), steps=10)
        assert job.inspection.steps == int(10 * strength)
        assert job.inspection.start.shape == (64, 64, 3)  # (what it shows, on the demo model: test_demo_model.py)


def test_the_store_drops_a_jobs_capture_with_its_frames(engine):
    job, _ = _run(engine, inspect=("attention", "cfg"))
    store = JobStore(max_frames_bytes=1)
    store.add(job)
    newer, _ = _run(engine)
    store.add(newer)  # the owner's newest finished job keeps its frames; the older one's go
    assert job.inspection is None and job.step_frames == []


# ---- the routes


@pytest.fixture(scope="module")
def client(engine):
    service = job_service(engine)
    with header_user_client(build_inspect_router(service), build_frames_router(service)) as test_client:
        yield test_client


def _png(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_the_routes_answer_the_owner_with_maps_cfg_schedule_and_start(client, inspected_job):
    job, _ = inspected_job
    alice = {"X-User": "alice"}
    attention = client.get(f"/studio/api/jobs/{job.id}/attention", headers=alice).json()
    assert [t["text"] for t in attention["tokens"]] == PROMPT.split()
    heatmap = _png(attention["tokens"][2]["heatmap"])
    assert heatmap.mode == "L" and heatmap.size == (64, 64) and np.asarray(heatmap).max() == 255
    one_step = client.get(f"/studio/api/jobs/{job.id}/attention?step=2", headers=alice).json()
    assert one_step["step"] == 2 and one_step["tokens"][2]["heatmap"] != attention["tokens"][2]["heatmap"]
    cfg = client.get(f"/studio/api/jobs/{job.id}/cfg?step=3", headers=alice).json()
    assert {_png(cfg[k]).size for k in ("uncond", "cond", "guided", "difference")} == {(64, 64)}
    schedule = client.get(f"/studio/api/jobs/{job.id}/schedule", headers=alice).json()
    assert len(schedule["sigmas"]) == len(schedule["timesteps"]) == STEPS
    tokens = client.get(f"/studio/api/jobs/{job.id}/tokens", headers=alice).json()
    assert tokens["chunks"] == 1 and [t["text"] for t in tokens["tokens"]][:3] == ["a</w>", "red</w>", "circle</w>"]
    assert {t["chunk"] for t in tokens["tokens"]} == {0} and tokens["loras"] == []
    start = client.get(f"/studio/api/jobs/{job.id}/start", headers=alice).json()
    assert _png(start["image"]).size == (64, 64) and start["steps"] == STEPS


def test_the_routes_hide_a_job_from_everyone_but_its_owner(client, inspected_job):
    job, _ = inspected_job
    for view in ("attention", "cfg?step=1", "schedule", "start", "tokens"):
        answer = client.get(f"/studio/api/jobs/{job.id}/{view}", headers={"X-User": "mallory"})
        assert answer.status_code == 404 and "among yours" in answer.json()["detail"]


def test_the_routes_explain_bad_steps_and_what_was_not_captured(client, engine, inspected_job):
    job, _ = inspected_job
    alice = {"X-User": "alice"}
    for path in (f"attention?step={STEPS + 1}", "cfg?step=0", "cfg"):
        answer = client.get(f"/studio/api/jobs/{job.id}/{path}", headers=alice)
        assert answer.status_code == 400 and "step" in answer.json()["detail"]
    plain, _ = _run(engine, owner="alice")
    answer = client.get(f"/studio/api/jobs/{plain.id}/attention", headers=alice)
    assert answer.status_code == 404 and '"inspect"' in answer.json()["detail"]


def test_a_request_to_inspect_something_unknown_is_refused(engine):
    from studio.contract import RequestError
    from studio.validation import validate

    for bad in (("everything",), ("cfg", "cfg"), "attention"):
        with pytest.raises(RequestError, match="inspect must be"):
            validate(GenerationRequest("x", inspect=bad), engine.settings)


def test_the_contact_sheet_adds_a_column_per_chosen_words_attention(client, inspected_job):
    job, _ = inspected_job
    alice = {"X-User": "alice"}
    plain = Image.open(io.BytesIO(client.get(f"/studio/api/jobs/{job.id}/contact-sheet.png", headers=alice).content))
    answer = client.get(f"/studio/api/jobs/{job.id}/contact-sheet.png?words=circle,red", headers=alice)
    assert answer.status_code == 200
    assert Image.open(io.BytesIO(answer.content)).width == plain.width + 2 * (128 + 4)  # two more cells and gaps
    answer = client.get(f"/studio/api/jobs/{job.id}/contact-sheet.png?words=dragon", headers=alice)
    assert answer.status_code == 400 and "circle" in answer.json()["detail"]


def test_a_long_prompts_second_chunk_has_its_own_positions(engine):
    words = ["red", "circle"] * 40
    job, _ = _run(engine, prompt=" ".join(words), inspect=("attention",), steps=2)
    inspected = job.inspection
    assert inspected.attention.shape[1] == 2 * 77
    assert [w.positions[0] for w in inspected.words][74:77] == [75, 78, 79]  # chunk 2 starts after its start token
    assert {t.chunk for t in inspected.tokens} == {0, 1}
