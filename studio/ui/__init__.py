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

from . import extras, img2img, inpaint, networks, options, png_info, script_panel, step_previews, txt2img
from studio.contract import LOCAL_USER

from .panel import Panel
from .streaming import SILENT, TELLING, Services, Session

CSS = """
.studio-banner { background: #fff4d6; border: 1px solid #e0b252; border-radius: 8px; padding: 8px 14px; color: #5c4100; }
.studio-banner p { margin: 0; }
.token-counter { font-size: 0.85em; color: var(--body-text-color-subdued); }
.token-over { color: #b45309; font-weight: 600; }
.studio-progress { font-variant-numeric: tabular-nums; padding: 4px 2px; min-height: 1.6em; }
.studio-progress-done { color: #15803d; font-weight: 600; }
.studio-progress-cancelled { color: #b91c1c; }
.studio-footer { font-size: 0.85em; color: var(--body-text-color-subdued); }
/* Our own status lines: never Gradio's timer/"Error" overlay on them (their text would mix into ours). */
.studio-quiet [data-testid="status-tracker"] { display: none !important; }
.studio-live { min-height: 300px; display: flex; align-items: center; justify-content: center;
               background: var(--block-background-fill); border-radius: 8px; }
.studio-live img { max-width: 100%; height: 300px; object-fit: contain; }
.studio-downloads { margin: 1.9em 0 0.2em; padding-left: 1.2em; font-size: 0.9em; }
.studio-note { font-size: 0.9em; }
.studio-note ul { margin: 0.2em 0; padding-left: 1.2em; }
""" + networks.CSS + options.CSS + script_panel.CSS

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
      if (line && !line.classList.contains('studio-progress-done')) line.textContent = `${prefix}Step ${step.step}/${step.total}${etaText(step.eta)}`;
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
  document.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.key !== 'Enter') return;
    const box = e.target && e.target.closest ? e.target.closest('.studio-prompt') : null;
    if (!box || !box.id) return;
    const button = document.getElementById(box.id.split('-')[0] + '-generate');
    if (button) { e.preventDefault(); button.click(); }
  });
}
"""


SHORTCUTS_JS = (SHORTCUTS_JS.replace("__CSS__", json.dumps(CSS)).replace("__CARDS__", networks.CARD_JS)
                .replace("__TXT__", script_panel.TXT_JS))


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


def build_ui(job_service, *, files=None) -> gr.Blocks:
    """job_service: studio.service.JobService (jobs, the model rule, engine facts); files: what hands pictures to
    Gradio per user (the web side's GradioFiles). Call private_gradio_cache() (studio.web.gradio_files) first: Gradio
    reads its cache folder per component."""
    services = Services(job_service, files=files)
    with gr.Blocks(title="SD Studio") as blocks:
        session = gr.State(Session())
        banner = gr.Markdown(**_banner_kwargs(job_service), elem_classes=["studio-banner"], elem_id="studio-banner")
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
                steps = step_previews.build(session)
            with gr.Tab("PNG info", id="pnginfo", elem_id="tab-pnginfo"):
                info = png_info.build()
        footer = gr.Markdown(footer_markdown(job_service), elem_classes=["studio-footer"], elem_id="studio-footer")

        for panel in (t2i, i2i, inp):
            _wire_sends(services, panel, tabs, i2i, inp, session, TELLING, ext)
        _wire_extras_sends(services, ext, tabs, i2i, inp, session, TELLING)
        extras.wire(services, ext, extras_tab, session)
        _wire_png_info(job_service, info, t2i, tabs, TELLING)
        steps_tab.select(steps["show_last"], [session, steps["view"]], [steps["slider"]] + steps["pictures"], **SILENT)
        def on_load(request: gr.Request):
            return footer_markdown(job_service) + user_markdown(request), banner_update(job_service)

        blocks.load(on_load, None, [footer, banner], **SILENT)
        blocks.load(None, None, None, js=SHORTCUTS_JS, **SILENT)
    return blocks


def _banner_kwargs(job_service) -> dict:
    notice = job_service.info().notice
    return dict(value=f"⚠️ {notice}" if notice else "", visible=bool(notice))


def _wire_sends(services: Services, panel: Panel, tabs, i2i: Panel, inp: Panel, session, private, ext: dict) -> None:
    def chosen(s: Session):
        image = s.selected_image(panel.tab) if s else None
        if image is None:
            raise gr.Error("No result to send yet: generate first.", print_exception=False)
        return image

    def to_img2img(s: Session, prompt, negative, request: gr.Request):
        picture = services.hand_over(request, chosen(s).path)
        return gr.Tabs(selected="img2img"), picture, prompt, negative

    def to_inpaint(s: Session, prompt, negative, request: gr.Request):
        picture = services.hand_over(request, chosen(s).path)
        editor = {"background": picture, "layers": [], "composite": picture}
        return gr.Tabs(selected="inpaint"), editor, prompt, negative

    panel.to_img2img.click(to_img2img, [session, panel.prompt, panel.negative_prompt],
                           [tabs, i2i.extra["init_image"], i2i.prompt, i2i.negative_prompt], **private)
    panel.to_inpaint.click(to_inpaint, [session, panel.prompt, panel.negative_prompt],
                           [tabs, inp.extra["editor"], inp.prompt, inp.negative_prompt], **private)
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
        loras, embeddings = networks.listing(job_service)
        vaes = networks.vae_names(job_service)
        upscalers = options.hires_upscaler_names(job_service)
        fields, notes = png_info.plan_send(params, loras=loras, embeddings=embeddings, vaes=vaes[1:], upscalers=upscalers,
                                           models=_offered_models(job_service), model_hashes=_model_hashes(job_service))
        if not fields:
            raise gr.Error("No parameters to send: drop a PNG made by the studio or A1111.", print_exception=False)
        values = {name: fields[name] if name in fields else gr.skip() for name in targets}
        values.update(_send_updates(fields, vaes, upscalers, targets))
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


def _offered_models(job_service) -> list[str]:
    models = list(job_service.models() or [])
    current = job_service.info().model
    return models if not current or current in models else [current] + models


def _model_hashes(job_service) -> dict:
    try:
        return job_service.model_hashes() or {}
    except Exception:
        return {}


__all__ = ["build_ui", "CSS", "footer_markdown", "user_markdown"]
