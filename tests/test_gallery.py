"""The History tab: each user's images from the PNGs on disk (studio.history.History), newest first, paged, searched by
prompt and filtered by model and day, read once and then served from a cache; Delete moves a picture to the user's
hidden trash. Through the UI's own handlers: a user lists, picks, sends and deletes only their own images."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from studio.history import TRASH, History, HistoryFilter, safe_output_file
from studio.outputs import OutputStore
from studio.ui.gallery import ANY_DAY, ANY_MODEL, HistoryView


class Clock:
    """OutputStore's day, set by the test."""

    def __init__(self, day: str):
        self.day = dt.date.fromisoformat(day)

    def __call__(self) -> dt.date:
        return self.day


def infotext(prompt: str, seed: int, model: str) -> str:
    return (f"{prompt}\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, "
            f"Seed: {seed}, Size: 64x64, Model: {model}")


def save(store: OutputStore, clock: Clock, day: str, prompt: str, seed: int, model: str = "tiny", owner: str = "alice") -> str:
    """One PNG saved through OutputStore on `day`; its "<day>/<file>.png" id."""
    clock.day = dt.date.fromisoformat(day)
    path = store.save_png(Image.new("RGB", (64, 64), (seed % 256, 80, 160)), infotext(prompt, seed, model), seed, owner=owner)
    return f"{day}/{path.name}"


@pytest.fixture
def store(tmp_path):
    clock = Clock("2024-05-01")
    return OutputStore(tmp_path / "outputs", clock=clock), clock


@pytest.fixture
def seven(store):
    """alice's seven images over three days and two models; bob's one; in the order they were made."""
    outputs, clock = store
    made = [save(outputs, clock, "2024-05-01", "A Red Fox in snow", 1),
            save(outputs, clock, "2024-05-01", "a lighthouse at dusk", 2, "other"),
            save(outputs, clock, "2024-05-02", "red barn, oil painting", 3),
            save(outputs, clock, "2024-05-02", "a cat", 4, "other"),
            save(outputs, clock, "2024-05-02", "a cat, RED collar", 5),
            save(outputs, clock, "2024-05-03", "mountains", 6),
            save(outputs, clock, "2024-05-03", "a red kite", 7, "other")]
    save(outputs, clock, "2024-05-03", "bob's red secret", 8, owner="bob")
    return outputs, made


def test_history_lists_newest_first_in_pages(seven):
    outputs, made = seven
    history = History(outputs)
    newest_first = list(reversed(made))
    assert [e.relative for e in history.entries("alice")] == newest_first
    first = history.page("alice", HistoryFilter(), page=1, per_page=3)
    assert [e.relative for e in first.entries] == newest_first[:3]
    assert (first.page, first.pages, first.total) == (1, 3, 7)
    last = history.page("alice", HistoryFilter(), page=3, per_page=3)
    assert [e.relative for e in last.entries] == newest_first[6:]
    assert history.page("alice", HistoryFilter(), page=99, per_page=3).page == 3  # clamped to the last page
    assert history.page("alice", HistoryFilter(), page=-4, per_page=3).page == 1
    assert first.models == ["other", "tiny"] and first.days == ["2024-05-03", "2024-05-02", "2024-05-01"]
    assert all("bob" not in e.prompt for e in history.entries("alice"))
    empty = history.page("carol")
    assert (empty.entries, empty.pages, empty.total, empty.models, empty.days) == ([], 1, 0, [], [])


def test_history_searches_prompts_and_filters_by_model_and_day(seven):
    outputs, made = seven
    history = History(outputs)

    def found(**where) -> list[int]:
        return [e.seed for e in history.page("alice", HistoryFilter(**where), per_page=100).entries]

    assert found(text="red") == [7, 5, 3, 1]  # case-insensitive substring of the prompt, newest first
    assert found(text="  RED ") == [7, 5, 3, 1]
    assert found(text="blurry") == []  # the negative prompt is not the prompt
    assert found(model="other") == [7, 4, 2]
    assert found(day="2024-05-02") == [5, 4, 3]
    assert found(text="red", model="tiny", day="2024-05-02") == [5, 3]
    assert found(text="secret") == []  # bob's image is not alice's
    page = history.page("alice", HistoryFilter(text="red"), page=2, per_page=3)
    assert (page.total, page.pages, [e.seed for e in page.entries]) == (4, 2, [1])
    assert page.models == ["other", "tiny"]  # the lists offer everything the user has, whatever the filter


def test_history_reads_each_png_once_until_it_changes(seven, monkeypatch):
    import studio.history as module

    outputs, made = seven
    history = History(outputs)
    opened = []
    real_open = module.Image.open
    monkeypatch.setattr(module.Image, "open", lambda path, *a, **k: (opened.append(Path(path).name), real_open(path, *a, **k))[1])
    history.page("alice")
    assert len(opened) == 7
    opened.clear()
    for number in (1, 2, 1):
        history.page("alice", HistoryFilter(text="red"), page=number, per_page=2)
    assert history.find("alice", made[0]) is not None
    assert opened == []  # paging, searching and picking read no PNG again
    changed = outputs.owner_root("alice") / made[0]
    Image.new("RGB", (32, 32)).save(changed, pnginfo=_text(infotext("a blue fox", 1, "tiny")))
    assert [e.prompt for e in history.entries("alice") if e.relative == made[0]] == ["a blue fox"]
    assert opened == [changed.name]  # only the file that changed


def _text(value: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", value)
    return info


def test_delete_moves_the_picture_to_the_owners_trash(seven):
    outputs, made = seven
    history = History(outputs)
    history.page("alice")
    victim = made[3]
    assert history.trash("alice", victim)
    day, name = victim.split("/")
    kept = outputs.owner_root("alice") / TRASH / day / name
    assert kept.is_file() and not (outputs.owner_root("alice") / victim).exists()  # moved, not destroyed
    assert victim not in [e.relative for e in history.entries("alice")]
    assert history.page("alice").total == 6 and history.find("alice", victim) is None
    assert safe_output_file(outputs, "alice", f"{TRASH}/{name}") is None  # the trash is never served
    assert not history.trash("alice", victim)  # once only
    # A later picture may take the freed name (OutputStore numbers after the highest left): deleting it too keeps both.
    outputs.owner_root("alice").joinpath(victim).write_bytes(kept.read_bytes())
    assert history.trash("alice", victim)
    assert sorted(p.name for p in kept.parent.iterdir()) == sorted([name, name.replace(".png", ".1.png")])


def test_a_user_cannot_delete_or_open_another_users_picture(seven):
    outputs, made = seven
    history = History(outputs)
    for relative in made[:2]:
        assert not history.trash("bob", relative)
        assert history.find("bob", relative) is None
        assert (outputs.owner_root("alice") / relative).is_file()
    for forged in ("../alice/" + made[0], f"{TRASH}/x.png", "/etc/passwd", made[0] + "/..", "", None, 42):
        assert not history.trash("alice", forged) and history.find("alice", forged) is None
    assert history.page("alice").total == 7 and history.page("bob").total == 1


# ---- through the UI's handlers (the functions the Gradio page calls), as alice and as bob


@pytest.fixture(scope="module")
def ui(engine):
    from server_support import job_service

    from studio.ui import build_ui

    blocks = build_ui(job_service(engine))
    try:
        yield blocks
    finally:
        blocks.close()


def _block(blocks, elem_id: str):
    return next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def _handler(blocks, elem_id: str, event: str = "click"):
    """The function the page calls on `event` of the component `elem_id`, and its outputs' elem_ids."""
    block = _block(blocks, elem_id)
    fn = next(f for f in blocks.fns.values() if any(t[0] == block._id and t[1] == event for t in f.targets))
    return fn.fn, [getattr(o, "elem_id", None) for o in fn.outputs]


def _as(user: str):
    return SimpleNamespace(username=user, headers={"host": "127.0.0.1:7860"}, url=SimpleNamespace(scheme="http"), client=None)


@pytest.fixture
def pictures(engine):
    """alice's two pictures and bob's one, in the engine's outputs (the store the UI reads)."""
    outputs = engine.outputs
    made = {}
    for owner, prompt, seed in (("alice", "a lighthouse at dusk", 11), ("alice", "a red fox", 12), ("bob", "bob's secret", 13)):
        path = outputs.save_png(Image.new("RGB", (64, 64), (seed, 60, 90)), infotext(prompt, seed, "tiny"), seed, owner=owner)
        made[prompt] = f"{path.parent.name}/{path.name}"
    yield made
    for owner in ("alice", "bob"):
        for path in outputs.owner_root(owner).rglob("*.png"):
            path.unlink()


def _listing(ui, user: str, view: HistoryView, text: str = "") -> dict:
    refresh, names = _handler(ui, "history-refresh")
    return dict(zip(names, refresh(view, text, ANY_MODEL, ANY_DAY, _as(user))))


def _urls(listed: dict) -> list[str]:
    """The pictures the grid shows (its cards' images)."""
    return re.findall(r"<img src='([^']+)'", listed["history-gallery"])


def test_the_tab_lists_picks_and_deletes_only_the_users_own_pictures(ui, pictures, engine):
    alice, bob = HistoryView(), HistoryView()
    listed = _listing(ui, "alice", alice)
    assert alice.shown == [pictures["a red fox"], pictures["a lighthouse at dusk"]]  # newest first
    assert _urls(listed) == [f"/studio/files/{r}" for r in alice.shown]
    assert listed["history-page"] == "Page 1 of 1 · 2 images"
    assert _listing(ui, "alice", alice, text="FOX")["history-page"] == "Page 1 of 1 · 1 image"
    assert _listing(ui, "bob", bob)["history-page"] == "Page 1 of 1 · 1 image" and bob.shown == [pictures["bob's secret"]]

    pick, names = _handler(ui, "history-gallery", "select")
    _listing(ui, "alice", alice)
    shown = dict(zip(names, pick(alice, SimpleNamespace(index=1, value="ignored"), _as("alice"))))
    assert "Seed: 11" in shown["history-parameters"] and pictures["a lighthouse at dusk"] in shown["history-image"]
    assert shown["history-download"].link == f"/studio/files/{pictures['a lighthouse at dusk']}"
    assert all(shown[f"history-{name}"].interactive for name in ("download", "delete", "to-img2img", "reuse-seed"))
    assert not listed["history-delete"].interactive  # nothing picked yet on a fresh listing

    # bob, even with alice's picture named in his session, reaches none of it: not shown, not sent, not deleted
    bob.shown, bob.selected = [pictures["a red fox"]], pictures["a red fox"]
    with pytest.raises(gr.Error):
        pick(bob, SimpleNamespace(index=0), _as("bob"))
    for button in ("history-delete", "history-to-txt2img", "history-to-img2img", "history-to-inpaint", "history-reuse-seed"):
        fn, _ = _handler(ui, button)
        bob.selected = pictures["a red fox"]
        args = (bob, "", ANY_MODEL, ANY_DAY, _as("bob")) if button == "history-delete" else (bob, _as("bob"))
        with pytest.raises(gr.Error, match="no longer in your history"):
            fn(*args)
    assert (engine.outputs.owner_root("alice") / pictures["a red fox"]).is_file()

    # alice deletes her picked picture: it goes to her trash and out of the listing
    delete, names = _handler(ui, "history-delete")
    after = dict(zip(names, delete(alice, "", ANY_MODEL, ANY_DAY, _as("alice"))))
    gone = pictures["a lighthouse at dusk"]
    assert not (engine.outputs.owner_root("alice") / gone).exists()
    assert (engine.outputs.owner_root("alice") / TRASH / gone).is_file()
    assert _urls(after) == [f"/studio/files/{pictures['a red fox']}"]
    assert after["history-page"] == "Page 1 of 1 · 1 image" and alice.selected is None
    with pytest.raises(gr.Error, match="Select an image"):
        delete(alice, "", ANY_MODEL, ANY_DAY, _as("alice"))


def test_send_fills_the_tabs_with_the_pictures_parameters(ui, pictures):
    alice = HistoryView()
    _listing(ui, "alice", alice)
    alice.selected = pictures["a red fox"]
    send, names = _handler(ui, "history-to-txt2img")
    values = dict(zip(names, send(alice, _as("alice"))))
    assert values["studio-tabs"].selected == "txt2img"
    assert values["txt2img-prompt"] == "a red fox" and values["txt2img-seed"] == 12
    assert values["txt2img-negative"] == "blurry" and values["txt2img-steps"] == 2

    send, names = _handler(ui, "history-to-img2img")
    values = dict(zip(names, send(alice, _as("alice"))))
    assert values["studio-tabs"].selected == "img2img" and values["img2img-prompt"] == "a red fox"
    picture = values["img2img-init-image"]
    assert str(picture).endswith(pictures["a red fox"].split("/")[1])  # the user's own file (no Gradio files here)

    send, names = _handler(ui, "history-to-inpaint")
    values = dict(zip(names, send(alice, _as("alice"))))
    editor = values["inpaint-editor"]
    assert values["studio-tabs"].selected == "inpaint" and values["inpaint-prompt"] == "a red fox"
    assert editor["background"] == editor["composite"] == picture and editor["layers"] == []

    reuse, names = _handler(ui, "history-reuse-seed")
    values = dict(zip(names, reuse(alice, _as("alice"))))
    assert values["txt2img-seed"] == 12 and values["studio-tabs"].selected == "txt2img"


def test_previous_and_next_page_through_and_filters_start_again_at_page_one(ui, pictures, monkeypatch):
    import studio.ui.gallery as gallery

    monkeypatch.setattr(gallery, "PER_PAGE", 1)
    alice = HistoryView()
    listed = _listing(ui, "alice", alice)
    assert listed["history-page"] == "Page 1 of 2 · 2 images" and _urls(listed) == [f"/studio/files/{pictures['a red fox']}"]
    assert not listed["history-prev"].interactive and listed["history-next"].interactive
    following, names = _handler(ui, "history-next")
    second = dict(zip(names, following(alice, "", ANY_MODEL, ANY_DAY, _as("alice"))))
    assert second["history-page"] == "Page 2 of 2 · 2 images"
    assert _urls(second) == [f"/studio/files/{pictures['a lighthouse at dusk']}"] and alice.page == 2
    assert second["history-prev"].interactive and not second["history-next"].interactive
    assert dict(zip(names, following(alice, "", ANY_MODEL, ANY_DAY, _as("alice"))))["history-page"] == "Page 2 of 2 · 2 images"
    chosen, names = _handler(ui, "history-model", "input")
    day = pictures["a red fox"].split("/")[0]
    narrowed = dict(zip(names, chosen(alice, "lighthouse", "tiny", day, _as("alice"))))
    assert narrowed["history-page"] == "Page 1 of 1 · 1 image" and alice.page == 1
    assert narrowed["history-model"].choices == [(ANY_MODEL, ANY_MODEL), ("tiny", "tiny")]
    assert narrowed["history-day"].choices == [(ANY_DAY, ANY_DAY), (day, day)]
    nothing = dict(zip(names, chosen(alice, "zebra", ANY_MODEL, ANY_DAY, _as("alice"))))
    assert nothing["history-page"] == "No images" and "No image matches" in nothing["history-gallery"]
