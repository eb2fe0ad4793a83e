"""The Gradio front end. Imports no torch: it talks to the job service (studio.service) through typed requests and
job events.

    build_ui(job_service, files=) -> gr.Blocks   the whole studio (one module per tab, a shared streaming helper)
    CSS                                               its style sheet
"""

from __future__ import annotations

import html
import json
from typing import Optional

import gradio as gr

from . import extras, gallery, img2img, inpaint, networks, options, png_info, script_panel, settings, step_previews, txt2img
from studio.contract import LOCAL_USER
from studio.metadata import parse_infotext
from studio.history import History
from studio.service import model_about as describe_model
from studio.user_settings import UserSettingsStore

from .options import offered_models
from .panel import IMAGE_CONTROLS, Panel, model_picker
from .streaming import SILENT, TELLING, Services, Session

CSS = """
.studio-banner { background: #fff4d6; border: 1px solid #e0b252; border-radius: 8px; padding: 8px 14px; color: #5c4100; }
.studio-banner p { margin: 0; }
.token-counter { font-size: 0.85em; color: var(--body-text-color-subdued); }
.token-over { color: #b45309; font-weight: 600; }
.studio-progress { font-variant-numeric: tabular-nums; padding: 4px 8px; min-height: 1.6em; border-radius: 6px;
                    background: linear-gradient(to right, var(--color-accent-soft) var(--studio-done, 0%), transparent 0); }
.studio-progress-done, .studio-progress-cancelled { background: none; }
.studio-progress-done { color: #15803d; font-weight: 600; }
.studio-progress-cancelled { color: #b91c1c; }
.studio-footer { font-size: 0.85em; color: var(--body-text-color-subdued); }
/* Our own status lines: never Gradio's timer/"Error" overlay on them (their text would mix into ours). */
.studio-quiet [data-testid="status-tracker"] { display: none !important; }
.studio-live { min-height: 300px; display: flex; align-items: center; justify-content: center;
               background: var(--block-background-fill); border-radius: 8px; }
.studio-live img { max-width: 100%; height: 300px; object-fit: contain; }
.studio-live .studio-depth-kept { margin: 0 0 0 12px; text-align: center; font-size: 0.85em; }
.studio-live .studio-depth-kept img { height: 200px; }
.studio-downloads { margin: 1.9em 0 0.2em; padding-left: 1.2em; font-size: 0.9em; }
.studio-note { font-size: 0.9em; }
.studio-note ul { margin: 0.2em 0; padding-left: 1.2em; }
/* The job list under Generate: one line a job, its Skip and Cancel at the end. */
.studio-jobs:empty { display: none; }
.studio-job-title { font-size: 0.85em; color: var(--body-text-color-subdued); margin: 2px 0; }
.studio-jobs ol { margin: 0; padding: 0; list-style: none; }
.studio-jobs li { display: flex; gap: 8px; align-items: center; font-size: 0.9em; padding: 2px 0; }
.studio-job-state { font-variant-numeric: tabular-nums; white-space: nowrap; min-width: 9em; }
.studio-job-prompt { flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; color: var(--body-text-color-subdued); }
.studio-jobs button { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 0 8px; background: var(--button-secondary-background-fill); }
/* The model picker above the tabs, its Refresh beside the field (not the whole box's height). */
.studio-topbar { align-items: flex-end; }
#studio-model-refresh { margin-bottom: 12px; }
/* Aspect presets and Swap: one slim row under Width and Height. */
.studio-size-presets { gap: 6px !important; margin-top: -6px; }
.studio-size-presets > button { flex: 0 0 auto !important; min-width: 52px !important; padding: 2px 10px; }
""" + networks.CSS + options.CSS + script_panel.CSS + extras.CSS + gallery.CSS + step_previews.CSS

# On page load: the style sheet (so it applies however the server mounts the UI), and Ctrl+Enter (Cmd+Enter)
# in a prompt box clicks that tab's Generate button; a Networks card's click puts its tag into that tab's prompt.
SHORTCUTS_JS = """
() => {
  if (window.__studioShortcuts) return;
  window.__studioShortcuts = true;
  const style = document.createElement('style');
  style.textContent = __CSS__;
  document.head.appendChild(style);
  // Live previews: each job's frames and steps come from the studio's own stream (server-sent events, owner only),
  // into the live-preview box the generate handler drew; the stream closes when the job ends or the box goes.
  const streams = new Map();
  const etaText = (s) => !(s > 0) ? '' : s < 1 ? ' · ETA <1 s' : s < 60 ? ` · ETA ${Math.round(s)} s`
      : ` · ETA ${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, '0')} s`;
  // Gradio updates the live box in place (the same element, new attributes): a stream is tied to the box's
  // current data-stream, so the next job's stream replaces the last one's.
  const attach = (box) => {
    const known = streams.get(box);
    if (known && known.url === box.dataset.stream) return;
    if (known) known.source.close();
    const source = new EventSource(box.dataset.stream);
    streams.set(box, { url: box.dataset.stream, source });
    const frame = () => box.querySelector('img.studio-live-frame');
    const progress = () => document.querySelector(`#${box.dataset.tab}-progress .studio-progress`);
    source.addEventListener('preview', (e) => {
      const picture = JSON.parse(e.data), img = frame();
      if (!img || box.dataset.stream !== streams.get(box).url) return;
      img.src = picture.image; img.hidden = false;
      box.dataset.frames = String(Number(box.dataset.frames || 0) + 1);
    });
    source.addEventListener('step', (e) => {
      const step = JSON.parse(e.data), line = progress();
      // A script's cell keeps its "Cell 3/9" in front (data-prefix).
      const prefix = line && line.dataset.prefix ? `${line.dataset.prefix} · ` : '';
      if (line && !line.classList.contains('studio-progress-done')) {
        line.textContent = `${prefix}Step ${step.step}/${step.total}${etaText(step.eta)}`;
        line.style.setProperty('--studio-done', `${Math.round(100 * step.step / Math.max(step.total, 1))}%`);  // the bar
      }
    });
    for (const end of ['finished', 'failed', 'cancelled']) source.addEventListener(end, () => source.close());
  };
  const sweep = () => {
    document.querySelectorAll('.studio-live[data-stream]').forEach(attach);
    for (const [box, known] of streams) if (!box.isConnected) { known.source.close(); streams.delete(box); }
  };
  new MutationObserver(sweep).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-stream'] });
  sweep();
__CARDS__
__TXT__
__STEPS__
  // Gradio's gallery focuses its selected thumbnail when results arrive, and the browser scrolls the page to it: the
  // page would jump when a job ends. A gallery focus that no click or key asked for gets the scroll position back.
  let acted = 0, jumped = 0, steadyY = window.scrollY;
  const inGallery = (el) => !!(el && el.closest && el.closest('.gallery-container, [id$="-gallery"]'));
  // Only a click or key in a gallery (or Tab into it) asks for its focus: a Generate click does not.
  for (const kind of ['pointerdown', 'keydown', 'touchstart']) document.addEventListener(kind, (e) => {
    if (inGallery(e.target) || e.key === 'Tab') acted = Date.now(); }, true);
  window.addEventListener('scroll', () => { if (Date.now() - jumped > 300) steadyY = window.scrollY; }, { passive: true });
  document.addEventListener('focusin', (e) => {
    if (Date.now() - acted < 800 || !inGallery(e.target)) return;
    jumped = Date.now();
    const y = steadyY;
    window.scrollTo(window.scrollX, y);
    requestAnimationFrame(() => window.scrollTo(window.scrollX, y));
  }, true);
  // The job list under Generate: this user's queued and running jobs (UI and API alike) from the studio's own route,
  // each with Skip and Cancel; polled while the page is visible.
  const esc = (t) => String(t).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const jobRow = (j) => {
    const state = j.status === 'running' ? (j.total ? `Step ${j.step}/${j.total}` : 'Starting')
        : `Queued${j.position ? ' · position ' + j.position : ''}`;
    return `<li data-job="${esc(j.id)}"><span class="studio-job-state">${state}${etaText(j.eta)}</span>`
      + `<span class="studio-job-prompt" title="${esc(j.prompt)}">${esc(j.prompt || '(no prompt)')}</span>`
      + '<button data-act="skip" title="Finish this job now, with its picture as it stands">Skip</button>'
      + '<button data-act="cancel" title="Stop this job; it saves nothing">Cancel</button></li>';
  };
  const renderJobs = (jobs) => {
    const html = jobs.length ? `<div class="studio-job-title">Your jobs (${jobs.length})</div><ol>${jobs.map(jobRow).join('')}</ol>` : '';
    document.querySelectorAll('.studio-jobs').forEach((box) => { if (box.dataset.html !== html) { box.innerHTML = html; box.dataset.html = html; } });
  };
  const pollJobs = async () => {
    if (document.visibilityState === 'visible' && document.querySelector('.studio-jobs')) {
      try { const r = await fetch('studio/api/queue', { credentials: 'same-origin' }); if (r.ok) renderJobs((await r.json()).jobs || []); }
      catch (e) { /* the next poll tries again */ }
    }
    setTimeout(pollJobs, 1500);
  };
  pollJobs();
  document.addEventListener('click', (e) => {
    const button = e.target.closest ? e.target.closest('.studio-jobs button[data-act]') : null;
    if (!button) return;
    button.disabled = true;
    fetch(`studio/api/jobs/${encodeURIComponent(button.closest('li').dataset.job)}/${button.dataset.act}`,
          { method: 'POST', credentials: 'same-origin' });
  });
  // Gradio's buttons take no tooltip: titles by id suffix, set as controls appear.
  const titles = { '-dice': 'A random seed (-1): a new one for each image', '-recycle': 'The seed of the last image made here',
                   '-cancel': "Stop this tab's job (Escape)", '-generate': 'Generate (Ctrl+Enter)',
                   'studio-model-refresh': 'Look again for models in the models folder' };
  const entitle = () => { for (const [suffix, title] of Object.entries(titles))
    document.querySelectorAll(`button[id$="${suffix}"]`).forEach((b) => { if (!b.title) b.title = title; }); };
  new MutationObserver(entitle).observe(document.body, { childList: true, subtree: true });
  entitle();
  // A1111's Ctrl+Up/Down: the selection (or the word, or the "(…:w)" group at the cursor) gets 0.1 more or less
  // emphasis, written as "(text:1.1)"; back at 1 the brackets go.
  const weighted = /^\\(([\\s\\S]*):(-?\\d+(?:\\.\\d+)?)\\)$/;
  const emphasise = (area, up) => {
    const text = area.value;
    let start = area.selectionStart, end = area.selectionEnd;
    if (start === end) {
      const open = text.lastIndexOf('(', start - 1), close = text.indexOf(')', start);
      if (open >= 0 && close >= 0 && !text.slice(open + 1, start).includes(')') && weighted.test(text.slice(open, close + 1))) {
        start = open; end = close + 1;
      } else {
        while (start > 0 && !/[\\s,()]/.test(text[start - 1])) start--;
        while (end < text.length && !/[\\s,()]/.test(text[end])) end++;
      }
    } else if (text[start - 1] === '(') {  // the inside of a group selected: the group
      const rest = text.slice(end).match(/^:(-?\\d+(?:\\.\\d+)?)\\)/);
      if (rest) { start -= 1; end += rest[0].length; }
    }
    if (start === end) return;
    const selected = text.slice(start, end), group = selected.match(weighted);
    const inner = group ? group[1] : selected;
    const weight = Math.round(((group ? parseFloat(group[2]) : 1) + (up ? 0.1 : -0.1)) * 100) / 100;
    const replaced = weight === 1 ? inner : `(${inner}:${weight})`;
    area.value = text.slice(0, start) + replaced + text.slice(end);
    const from = weight === 1 ? start : start + 1;
    area.setSelectionRange(from, from + inner.length);
    area.dispatchEvent(new Event('input', { bubbles: true }));
  };
  document.addEventListener('keydown', (e) => {
    const box = e.target && e.target.closest ? e.target.closest('.studio-prompt') : null;
    if ((e.ctrlKey || e.metaKey) && (e.key === 'ArrowUp' || e.key === 'ArrowDown') && box && e.target.tagName === 'TEXTAREA') {
      e.preventDefault(); emphasise(e.target, e.key === 'ArrowUp'); return;
    }
    if (e.key === 'Escape' && !e.defaultPrevented && !(e.target && e.target.closest && e.target.closest('.dropdown, [role=listbox], dialog'))) {
      const cancel = [...document.querySelectorAll('button[id$="-cancel"]')].find((b) => b.offsetParent !== null && !b.disabled);
      if (cancel) cancel.click();
      return;
    }
    if (!(e.ctrlKey || e.metaKey) || e.key !== 'Enter') return;
    if (!box || !box.id) return;
    const button = document.getElementById(box.id.split('-')[0] + '-generate');
    if (button) { e.preventDefault(); button.click(); }
  });
}
"""


SHORTCUTS_JS = (SHORTCUTS_JS.replace("__CSS__", json.dumps(CSS)).replace("__CARDS__", networks.CARD_JS)
                .replace("__TXT__", script_panel.TXT_JS).replace("__STEPS__", step_previews.PLAYER_JS))


def footer_markdown(job_service) -> str:
    info = job_service.info()
    return (
        f"**Model** {html.escape(info.model)} · **Device** {html.escape(info.device)} · **dtype** {html.escape(info.dtype)} · "
        f"**Attention** {html.escape(info.attention)} ({html.escape(info.attention_reason)}) · **Preview** {html.escape(info.preview)}"
    )


def user_markdown(request: Optional[gr.Request]) -> str:
    """With logins: who is logged in, and a way out."""
    user = getattr(request, "username", None) if request is not None else None
    if not user or user == LOCAL_USER:
        return ""
    return f" · Logged in as **{html.escape(user)}** · <a href='/logout' id='studio-logout'>Log out</a>"


def banner_update(job_service):
    notice = job_service.info().notice
    return gr.Markdown(f"⚠️ {notice}" if notice else "", visible=bool(notice))


def build_ui(job_service, *, files=None, user_settings: Optional[UserSettingsStore] = None) -> gr.Blocks:
    """job_service: studio.service.JobService (jobs, the model rule, engine facts); files: what hands pictures to
    Gradio per user (the web side's GradioFiles); user_settings: each user's saved settings (by default in their
    outputs folder). Call private_gradio_cache() (studio.web.gradio_files) first: Gradio reads its cache folder per
    component."""
    store = user_settings or UserSettingsStore(job_service.outputs)
    limits = settings.limits_of(job_service)
    services = Services(job_service, files=files, user_settings=store, settings_limits=limits)
    with gr.Blocks(title="SD Studio") as blocks:
        session = gr.State(Session())
        banner = gr.Markdown(**_banner_kwargs(job_service), elem_classes=["studio-banner"], elem_id="studio-banner")
        with gr.Row(elem_classes=["studio-topbar"], equal_height=False):
            services.model_picker = model_picker(job_service, "studio-model", scale=0, min_width=420)
            model_refresh = gr.Button("Refresh", elem_id="studio-model-refresh", scale=0, min_width=90, size="sm")
            # What the picked model does (a depth model runs Image to image only): the tabs stay, the line says.
            model_about = gr.Markdown(describe_model(job_service), elem_id="studio-model-about", elem_classes=["studio-note"])
        with gr.Tabs(elem_id="studio-tabs") as tabs:
            with gr.Tab("Text to image", id="txt2img", elem_id="tab-txt2img"):
                t2i = txt2img.build(services, session)
            with gr.Tab("Image to image", id="img2img", elem_id="tab-img2img"):
                i2i = img2img.build(services, session)
            with gr.Tab("Inpainting", id="inpaint", elem_id="tab-inpaint"):
                inp = inpaint.build(services, session)
            with gr.Tab("Extras", id="extras", elem_id="tab-extras") as extras_tab:
                ext = extras.build(services, session)
            with gr.Tab("Step previews", id="steps", elem_id="tab-steps") as steps_tab:
                steps = step_previews.build()
            with gr.Tab("PNG info", id="pnginfo", elem_id="tab-pnginfo"):
                info = png_info.build()
            with gr.Tab("History", id="history", elem_id="tab-history") as history_tab:
                hist = gallery.build(services, History(job_service.outputs),
                                     lambda params, targets: _plan_send(job_service, params, targets))
            with gr.Tab("Settings", id="settings", elem_id="tab-settings"):
                prefs = settings.build(job_service, store, limits)
        footer = gr.Markdown(footer_markdown(job_service), elem_classes=["studio-footer"], elem_id="studio-footer")

        for panel in (t2i, i2i, inp):
            _wire_sends(services, panel, tabs, i2i, inp, session, TELLING, ext)
        _wire_extras_sends(services, ext, tabs, i2i, inp, session, TELLING)
        extras.wire(services, ext, extras_tab, session)
        _wire_png_info(job_service, info, t2i, tabs, TELLING)
        gallery.wire(hist, history_tab, tabs, {"txt2img": t2i, "img2img": i2i, "inpaint": inp}, blocks)
        steps_tab.select(None, None, None, js=steps["refresh_js"], **SILENT)
        settings.wire(prefs, blocks, [t2i, i2i, inp])
        model_refresh.click(lambda: gr.Dropdown(choices=offered_models(job_service)), None, services.model_picker, **SILENT)
        services.model_picker.change(lambda name: describe_model(job_service, name), services.model_picker, model_about, **SILENT)
        def on_load(request: gr.Request):
            return footer_markdown(job_service) + user_markdown(request), banner_update(job_service)

        blocks.load(on_load, None, [footer, banner], **SILENT)
        _wire_face_hints(job_service, blocks, [t2i, i2i, inp], ext)
        blocks.load(None, None, None, js=SHORTCUTS_JS, **SILENT)
    return blocks


def _wire_face_hints(job_service, blocks: gr.Blocks, panels: list, ext: dict) -> None:
    """Each page load says which face restorers are installed now (weights dropped into models/GFPGAN or
    models/Codeformer since the studio started show up): under Restore faces, and in Extras."""
    def hints():
        names = options.face_restorer_names(job_service)
        info = options.restore_faces_info(names)
        return (*(gr.Checkbox(info=info) for _ in panels), extras.faces_hint(names))

    blocks.load(hints, None, [p.restore_faces for p in panels] + [ext["faces_hint"]], **SILENT)


def _banner_kwargs(job_service) -> dict:
    notice = job_service.info().notice
    return dict(value=f"⚠️ {notice}" if notice else "", visible=bool(notice))


def _wire_sends(services: Services, panel: Panel, tabs, i2i: Panel, inp: Panel, session, private, ext: dict) -> None:
    def chosen(s: Session):
        image = s.selected_image(panel.tab) if s else None
        if image is None:
            raise gr.Error("No result to send yet: generate first.", print_exception=False)
        return image

    i2i_targets, inp_targets = i2i.controls(), inp.controls()

    def carried(image, targets: dict) -> list:
        """The result's own parameters (prompts, seed, steps, sampler, size, CFG, networks, ...) for the target tab;
        what cannot apply there is said."""
        values, notes = _plan_send(services.job_service, parse_infotext(image.infotext or ""), targets)
        if notes:
            gr.Warning("Sent, but not everything applies here:<br>" + "<br>".join(f"• {html.escape(line)}" for line in notes),
                       duration=15)
        return [values.get(name, gr.skip()) for name in targets]

    def to_img2img(s: Session, request: gr.Request):
        image = chosen(s)
        return (gr.Tabs(selected="img2img"), services.hand_over(request, image.path), *carried(image, i2i_targets))

    def to_inpaint(s: Session, request: gr.Request):
        image = chosen(s)
        picture = services.hand_over(request, image.path)
        editor = {"background": picture, "layers": [], "composite": picture}
        return (gr.Tabs(selected="inpaint"), editor, *carried(image, inp_targets))

    panel.to_img2img.click(to_img2img, session, [tabs, i2i.extra["init_image"], *i2i_targets.values()], **TELLING)
    panel.to_inpaint.click(to_inpaint, session, [tabs, inp.extra["editor"], *inp_targets.values()], **TELLING)
    def to_extras(s: Session, request: gr.Request):
        return gr.Tabs(selected="extras"), services.hand_over(request, chosen(s).path)

    panel.to_extras.click(to_extras, session, [tabs, ext["image"]], **private)


def _wire_extras_sends(services: Services, ext: dict, tabs, i2i: Panel, inp: Panel, session, private) -> None:
    """Extras' result → Image to image / Inpainting (their prompts stay as they are)."""
    def to_img2img(s: Session):
        return gr.Tabs(selected="img2img"), extras.last_result(s)

    def to_inpaint(s: Session):
        picture = extras.last_result(s)
        return gr.Tabs(selected="inpaint"), {"background": picture, "layers": [], "composite": picture}

    ext["to_img2img"].click(to_img2img, session, [tabs, i2i.extra["init_image"]], **private)
    ext["to_inpaint"].click(to_inpaint, session, [tabs, inp.extra["editor"]], **private)


def _wire_png_info(job_service, info: dict, t2i: Panel, tabs, private) -> None:
    targets = t2i.controls()

    def send(params: dict):
        # `params` is the Parsed box's value, which the browser sends back: only its known keys are read, as text.
        params = params if isinstance(params, dict) else {}
        values, notes = _plan_send(job_service, params, targets)
        if not values:
            raise gr.Error("No parameters to send: drop a PNG made by the studio or A1111.", print_exception=False)
        # Toasts and the note render HTML: every part that came from the picture is escaped.
        lines = [html.escape(line) for line in notes]
        if notes:
            gr.Warning("Sent, but not everything applies here:<br>" + "<br>".join(f"• {line}" for line in lines), duration=15)
            note = ("<div class='studio-note'><b>Sent to Text to image. Not applied:</b><ul>"
                    + "".join(f"<li>{line}</li>" for line in lines) + "</ul></div>")
        else:
            note = "<div class='studio-note'>Sent to Text to image: every parameter applied.</div>"
        return (gr.Tabs(selected="txt2img"), *values.values(), note)

    info["send"].click(send, info["table"], [tabs, *targets.values(), info["note"]], **private)


def _plan_send(job_service, params: dict, targets: dict) -> tuple[dict, list[str]]:
    """A picture's parsed parameters → (values for `targets`, one tab's controls by name, gr.skip() where the text says
    nothing; what cannot be applied, one line each). No values when the text has none. PNG info's and History's sends."""
    loras, embeddings = networks.listing(job_service)
    vaes = networks.vae_names(job_service)
    upscalers = options.hires_upscaler_names(job_service)
    image_fields = tuple(name for name in IMAGE_CONTROLS if name in targets)
    target = ("Inpainting" if "mask_blur" in targets else "Image to image") if image_fields else "Text to image"
    fields, notes = png_info.plan_send(params, loras=loras, embeddings=embeddings, vaes=vaes[1:], upscalers=upscalers,
                                       models=offered_models(job_service), model_hashes=_model_hashes(job_service),
                                       face_restorers=options.face_restorer_names(job_service), target=target,
                                       image_fields=image_fields)
    if not fields:
        return {}, notes
    values = {name: fields[name] if name in fields else gr.skip() for name in targets}
    values.update(_send_updates(fields, vaes, upscalers, targets))
    return values, notes


def _send_updates(fields: dict, vaes: list, upscalers: list, targets: dict) -> dict:
    """Dropdowns whose choices follow the values sent (the sampler's schedule types, the hires sampler's), the VAE
    and upscaler lists as they are now, and the Hires. fix accordion opened when the picture used it."""
    updates = {}
    if "vae" in fields:
        updates["vae"] = gr.Dropdown(choices=vaes, value=fields["vae"])
    if "scheduler" in fields:
        updates["scheduler"] = gr.Dropdown(choices=options.schedule_types(fields["sampler_name"]), value=fields["scheduler"])
    if "hires_accordion" in targets:
        updates["hires_accordion"] = gr.Accordion(open=True) if fields.get("enable_hr") else gr.skip()
        if "hr_upscaler" in fields:
            updates["hr_upscaler"] = gr.Dropdown(choices=upscalers, value=fields["hr_upscaler"])
        if "hr_scheduler" in fields:
            sampler = fields["hr_sampler_name"] if fields.get("hr_sampler_name") not in (None, options.SAME_SAMPLER) else fields.get("sampler_name")
            updates["hr_scheduler"] = gr.Dropdown(choices=[options.SAME_SCHEDULER] + options.schedule_types(sampler),
                                                  value=fields["hr_scheduler"])
    return updates


def _model_hashes(job_service) -> dict:
    try:
        return job_service.model_hashes() or {}
    except Exception:
        return {}


__all__ = ["build_ui", "CSS", "footer_markdown", "user_markdown"]
