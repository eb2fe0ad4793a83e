"""History tab: each user's own finished images, newest first, from the PNGs on disk (studio.history.History) — paged,
searchable by prompt, filtered by model and day. A picked image is shown large with its parameters, and goes on from
there: reuse its seed, send it with all its parameters to Text to image / Image to image / Inpainting (the same plan
as PNG info's send), download it, or delete it (moved to the user's hidden trash folder, not destroyed).

Every handler acts for the asking user only: an image is named by its "<day>/<file>.png" id and looked up in that
user's own folder (studio.history.safe_output_file), never by a path a browser sent."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import quote

import gradio as gr

from studio.history import PER_PAGE, History, HistoryEntry, HistoryFilter
from studio.links import FILES

from .streaming import TELLING, Services, owner_of

ANY_MODEL = "All models"
ANY_DAY = "All days"
CAPTION_CHARS = 48
PICK_FIRST = "Select an image in the gallery first."
GONE = "That image is no longer in your history (deleted in another tab?): press Refresh."
ACTIONS = ("reuse_seed", "to_txt2img", "to_img2img", "to_inpaint", "delete")  # the buttons that act on the picked image
NOTHING_PICKED = "<div class='studio-history-empty'>Click an image to see it large, with its parameters and what to do with it.</div>"

# Tooltips for the tab's controls (Gradio's buttons take none): set by id on page load (TITLES_JS).
TITLES = {
    "history-refresh": "Read the list again (new images, changes made in another tab)",
    "history-prev": "The newer images (previous page)",
    "history-next": "The older images (next page)",
    "history-reuse-seed": "Put this image's seed into Text to image",
    "history-to-txt2img": "Open Text to image with every parameter of this image",
    "history-to-img2img": "Open Image to image with this image as input and its parameters",
    "history-to-inpaint": "Open Inpainting with this image to paint a mask on, and its parameters",
    "history-download": "Save this PNG (its parameters are inside it)",
    "history-delete": "Move this image to your trash folder on the server (it leaves the history; the file is kept)",
}
TITLES_JS = """
() => {
  const titles = __TITLES__;
  const apply = () => { for (const [id, title] of Object.entries(titles)) {
    const element = document.getElementById(id);
    if (element && element.title !== title) element.title = title; }
    // Download is a link to the studio's file route (the owner's own PNG): saved, not opened.
    const download = document.getElementById('history-download');
    if (download && download.tagName === 'A' && !download.hasAttribute('download')) download.setAttribute('download', ''); };
  new MutationObserver(apply).observe(document.body, { childList: true, subtree: true });
  apply();
}
""".replace("__TITLES__", json.dumps(TITLES))

# The grid's clicks become the tab's `select` event with the card's number on the page (the handler looks it up in
# the session's own list, never trusting anything else the browser sends); the clicked card is marked at once.
GRID_JS = """
element.addEventListener('click', (event) => {
  const card = event.target.closest('.studio-history-card');
  if (!card || !element.contains(card)) return;
  element.querySelectorAll('.studio-history-card.selected').forEach((other) => other.classList.remove('selected'));
  card.classList.add('selected');
  trigger('select', { index: Number(card.dataset.index), value: card.dataset.id });
});
"""

CSS = """
.studio-history-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: 8px; }
.studio-history-card { position: relative; aspect-ratio: 1; padding: 0; overflow: hidden; cursor: pointer;
                       border: 2px solid transparent; border-radius: 8px; background: var(--block-background-fill); }
.studio-history-card:hover, .studio-history-card:focus-visible { border-color: var(--color-accent-soft); outline: none; }
.studio-history-card.selected { border-color: var(--color-accent); }
.studio-history-card img { width: 100%; height: 100%; object-fit: cover; display: block; }
.studio-history-caption { position: absolute; left: 0; right: 0; bottom: 0; padding: 2px 6px; font-size: 0.75em; text-align: left;
                          color: #fff; background: rgba(0, 0, 0, 0.55); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#history-page { text-align: center; align-self: center; font-variant-numeric: tabular-nums; }
.studio-history-view { height: 420px; background: var(--block-background-fill); border-radius: 8px; }
.studio-history-view img { width: 100%; height: 100%; object-fit: contain; display: block; }
.studio-history-name { font-size: 0.85em; color: var(--body-text-color-subdued); margin-top: 4px; word-break: break-all; }
.studio-history-empty { min-height: 420px; display: flex; align-items: center; justify-content: center; text-align: center;
                        padding: 1em; color: var(--body-text-color-subdued); background: var(--block-background-fill);
                        border-radius: 8px; }
"""


@dataclass
class HistoryView:
    """Per browser session (gr.State): the page shown, the ids of its images in order, the one picked."""

    page: int = 1
    shown: list = field(default_factory=list)  # "<day>/<file>.png" of the gallery's images
    selected: Optional[str] = None

    def __deepcopy__(self, memo):  # gr.State copies the initial value per session: start empty
        return HistoryView()


def file_url(relative: str) -> str:
    return FILES + quote(relative)


def caption(entry: HistoryEntry) -> str:
    prompt = " ".join(entry.prompt.split())
    text = prompt if len(prompt) <= CAPTION_CHARS else prompt[: CAPTION_CHARS - 1] + "…"
    return text or (f"seed {entry.seed}" if entry.seed is not None else entry.relative)


def where(text: Any, model: Any, day: Any) -> HistoryFilter:
    """The filter boxes' values (as the browser sent them: checked, never trusted) as a HistoryFilter."""
    text = text if isinstance(text, str) else ""
    model = model if isinstance(model, str) and model != ANY_MODEL else ""
    day = day if isinstance(day, str) and day != ANY_DAY else ""
    return HistoryFilter(text=text[:500], model=model, day=day)


def grid_html(entries: list, empty: str) -> str:
    """The page's images as clickable cards (the picture from the studio's own file route, which serves its owner only)."""
    if not entries:
        return f"<div class='studio-history-empty'>{html.escape(empty)}</div>"
    cards = []
    for number, entry in enumerate(entries):
        url, text = html.escape(file_url(entry.relative)), html.escape(caption(entry))
        title = html.escape(f"{entry.prompt[:300]}\n{entry.relative}" if entry.prompt else entry.relative)
        cards.append(f"<button type='button' class='studio-history-card' data-index='{number}' "
                     f"data-id='{html.escape(entry.relative)}' title='{title}'>"
                     f"<img src='{url}' alt='{text}' loading='lazy'><span class='studio-history-caption'>{text}</span></button>")
    return f"<div class='studio-history-grid'>{''.join(cards)}</div>"


def empty_text(filtered: bool) -> str:
    if filtered:
        return "No image matches: change the search, or pick All models and All days."
    return "No images yet: what you generate shows up here."


def page_text(page) -> str:
    if page.total == 0:
        return "No images"
    return f"Page {page.page} of {page.pages} · {page.total} image{'s' if page.total != 1 else ''}"


DETAIL = ("image", "parameters", "download", *ACTIONS)


def detail(entry: Optional[HistoryEntry]) -> tuple:
    """(large view, parameters, Download, then the ACTIONS buttons) for the picked image; empty and disabled without one."""
    if entry is None:
        return (NOTHING_PICKED, "", gr.Button(link=None, interactive=False), *(gr.Button(interactive=False) for _ in ACTIONS))
    url = file_url(entry.relative)
    view = (f"<div class='studio-history-view'><img src='{html.escape(url)}' alt='{html.escape(caption(entry))}'></div>"
            f"<div class='studio-history-name'>{html.escape(entry.relative)}</div>")
    return (view, entry.infotext or "(no generation parameters in this image)", gr.Button(link=url, interactive=True),
            *(gr.Button(interactive=True) for _ in ACTIONS))


class HistoryTab:
    """The tab's handlers, for the asking user: services (pictures handed to Gradio per user), history (the users'
    images on disk), plan(params, targets) -> (values by control name, notes): what a send puts into a tab."""

    def __init__(self, services: Services, history: History, plan: Callable[[dict, dict], tuple]):
        self.services = services
        self.history = history
        self.plan = plan

    def listing(self, view: HistoryView, text, model, day, page: int, request: Optional[gr.Request]) -> tuple:
        """(gallery, page text, model list, day list, Previous, Next, then detail()'s: nothing picked)."""
        view = view if isinstance(view, HistoryView) else HistoryView()
        wanted = where(text, model, day)
        found = self.history.page(owner_of(request), wanted, page, PER_PAGE)
        view.page, view.shown, view.selected = found.page, [e.relative for e in found.entries], None
        filtered = bool(wanted.text.strip() or wanted.model or wanted.day)
        models = [ANY_MODEL] + found.models + ([wanted.model] if wanted.model and wanted.model not in found.models else [])
        days = [ANY_DAY] + found.days + ([wanted.day] if wanted.day and wanted.day not in found.days else [])
        return (grid_html(found.entries, empty_text(filtered)), page_text(found), gr.Dropdown(choices=models), gr.Dropdown(choices=days),
                gr.Button(interactive=found.page > 1), gr.Button(interactive=found.page < found.pages), *detail(None))

    def pick(self, view: HistoryView, index: Any, request: Optional[gr.Request]) -> tuple:
        """The gallery's image number `index` (of this session's page) picked: its detail()."""
        if not isinstance(view, HistoryView) or not isinstance(index, int) or not 0 <= index < len(view.shown):
            return detail(None)
        view.selected = view.shown[index]
        return detail(self.chosen(view, request))

    def chosen(self, view: HistoryView, request: Optional[gr.Request]) -> HistoryEntry:
        """The picked image, looked up in the asking user's own folder; gr.Error when there is none."""
        relative = view.selected if isinstance(view, HistoryView) else None
        if not relative:
            raise gr.Error(PICK_FIRST, print_exception=False)
        entry = self.history.find(owner_of(request), relative)
        if entry is None:
            raise gr.Error(GONE, print_exception=False)
        return entry

    def delete(self, view: HistoryView, request: Optional[gr.Request]) -> str:
        """Move the picked image to the user's trash; returns its name (gr.Error when it cannot be)."""
        entry = self.chosen(view, request)
        if not self.history.trash(owner_of(request), entry.relative):
            raise gr.Error(GONE, print_exception=False)
        view.selected = None
        return entry.relative

    def reuse_seed(self, view: HistoryView, request: Optional[gr.Request]) -> int:
        entry = self.chosen(view, request)
        if entry.seed is None:
            raise gr.Error("This image's parameters name no seed.", print_exception=False)
        return entry.seed

    def send(self, view: HistoryView, targets: dict, request: Optional[gr.Request]) -> tuple[HistoryEntry, list]:
        """(the picked image, values for `targets` in their order); its notes (what does not apply) as a warning."""
        entry = self.chosen(view, request)
        values, notes = self.plan(entry.parameters, targets)
        if not values:
            raise gr.Error("This image has no generation parameters to send: only the studio's or A1111's PNGs have them.",
                           print_exception=False)
        if notes:
            gr.Warning("Sent, but not everything applies here:<br>"
                       + "<br>".join(f"• {html.escape(line)}" for line in notes), duration=15)
        return entry, [values[name] for name in targets]

    def hand_over(self, entry: HistoryEntry, request: Optional[gr.Request]):
        """The image as a value Gradio may show this user (an input image for Image to image / Inpainting)."""
        return self.services.hand_over(request, str(entry.path))


def build(services: Services, history: History, plan: Callable[[dict, dict], tuple]) -> dict:
    """The tab's layout (inside its gr.Tab); wire() connects it once the generate tabs exist."""
    parts: dict[str, Any] = dict(handlers=HistoryTab(services, history, plan), view=gr.State(HistoryView()))
    with gr.Row():
        parts["search"] = gr.Textbox(label="Search prompts", placeholder="Words from the prompt, then Enter", scale=4,
                                     max_length=500, elem_id="history-search")
        parts["model"] = gr.Dropdown([ANY_MODEL], value=ANY_MODEL, label="Model", scale=2, elem_id="history-model")
        parts["day"] = gr.Dropdown([ANY_DAY], value=ANY_DAY, label="Day", scale=2, elem_id="history-day")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=480):
            with gr.Row(equal_height=True, elem_id="history-pager"):
                parts["prev"] = gr.Button("← Previous", size="md", interactive=False, scale=1, elem_id="history-prev")
                parts["page"] = gr.Markdown("", elem_id="history-page")
                parts["next"] = gr.Button("Next →", size="md", interactive=False, scale=1, elem_id="history-next")
                parts["refresh"] = gr.Button("Refresh", size="md", scale=1, elem_id="history-refresh")
            parts["gallery"] = gr.HTML(grid_html([], "Open this tab to see your images."), js_on_load=GRID_JS,
                                       elem_id="history-gallery")
        with gr.Column(scale=2, min_width=360):
            parts["image"] = gr.HTML(NOTHING_PICKED, elem_id="history-image")
            parts["parameters"] = gr.Textbox(label="Parameters", lines=5, max_lines=12, interactive=False, buttons=["copy"],
                                             elem_id="history-parameters")
            with gr.Row():
                parts["reuse_seed"] = gr.Button("Reuse seed", size="md", interactive=False, elem_id="history-reuse-seed")
                parts["to_txt2img"] = gr.Button("Send to Text to image", size="md", interactive=False, elem_id="history-to-txt2img")
            with gr.Row():
                parts["to_img2img"] = gr.Button("Send to Image to image", size="md", interactive=False, elem_id="history-to-img2img")
                parts["to_inpaint"] = gr.Button("Send to Inpainting", size="md", interactive=False, elem_id="history-to-inpaint")
            with gr.Row():
                parts["download"] = gr.Button("Download", size="md", interactive=False, elem_id="history-download")
                parts["delete"] = gr.Button("Delete", variant="stop", size="md", interactive=False, elem_id="history-delete")
    return parts


def wire(parts: dict, history_tab: gr.Tab, tabs: gr.Tabs, panels: dict, blocks: gr.Blocks) -> None:
    """panels: the generate tabs' Panels by tab id ("txt2img", "img2img", "inpaint")."""
    h: HistoryTab = parts["handlers"]
    view, filters = parts["view"], [parts["search"], parts["model"], parts["day"]]
    listed = [parts[name] for name in ("gallery", "page", "model", "day", "prev", "next", *DETAIL)]

    def first(v, text, model, day, request: gr.Request):
        return h.listing(v, text, model, day, 1, request)

    def same(v, text, model, day, request: gr.Request):
        return h.listing(v, text, model, day, getattr(v, "page", 1), request)

    def previous(v, text, model, day, request: gr.Request):
        return h.listing(v, text, model, day, getattr(v, "page", 1) - 1, request)

    def following(v, text, model, day, request: gr.Request):
        return h.listing(v, text, model, day, getattr(v, "page", 1) + 1, request)

    gr.on([history_tab.select, parts["refresh"].click], same, [view, *filters], listed, **TELLING)
    gr.on([parts["search"].submit, parts["model"].input, parts["day"].input], first, [view, *filters], listed, **TELLING)
    parts["prev"].click(previous, [view, *filters], listed, **TELLING)
    parts["next"].click(following, [view, *filters], listed, **TELLING)

    def pick(v, event: gr.SelectData, request: gr.Request):
        return h.pick(v, event.index, request)

    parts["gallery"].select(pick, view, [parts[name] for name in DETAIL], **TELLING)

    def delete(v, text, model, day, request: gr.Request):
        name = h.delete(v, request)
        gr.Info(f"Deleted {html.escape(name)}: moved to your trash, out of the history.")
        return h.listing(v, text, model, day, getattr(v, "page", 1), request)

    parts["delete"].click(delete, [view, *filters], listed, **TELLING)
    _wire_sends(h, parts, tabs, panels)
    blocks.load(None, None, None, js=TITLES_JS, api_visibility="private", queue=False, show_progress="hidden")


def _wire_sends(h: HistoryTab, parts: dict, tabs: gr.Tabs, panels: dict) -> None:
    t2i, i2i, inp = panels["txt2img"], panels["img2img"], panels["inpaint"]
    view = parts["view"]

    def reuse_seed(v, request: gr.Request):
        seed = h.reuse_seed(v, request)
        gr.Info(f"Seed {seed} is set in Text to image.")
        return gr.Tabs(selected="txt2img"), seed

    parts["reuse_seed"].click(reuse_seed, view, [tabs, t2i.seed], **TELLING)

    t2i_targets, i2i_targets, inp_targets = t2i.controls(), i2i.controls(), inp.controls()

    def to_txt2img(v, request: gr.Request):
        _, values = h.send(v, t2i_targets, request)
        return (gr.Tabs(selected="txt2img"), *values)

    def to_img2img(v, request: gr.Request):
        entry, values = h.send(v, i2i_targets, request)
        return (gr.Tabs(selected="img2img"), h.hand_over(entry, request), *values)

    def to_inpaint(v, request: gr.Request):
        entry, values = h.send(v, inp_targets, request)
        picture = h.hand_over(entry, request)
        return (gr.Tabs(selected="inpaint"), {"background": picture, "layers": [], "composite": picture}, *values)

    parts["to_txt2img"].click(to_txt2img, view, [tabs, *t2i_targets.values()], **TELLING)
    parts["to_img2img"].click(to_img2img, view, [tabs, i2i.extra["init_image"], *i2i_targets.values()], **TELLING)
    parts["to_inpaint"].click(to_inpaint, view, [tabs, inp.extra["editor"], *inp_targets.values()], **TELLING)
