"""Settings tab: this user's defaults (sampler, steps, size, CFG), live previews (mode, interval) and the file name
pattern of their pictures, saved per user (studio.user_settings) and applied on every page load. Saving also puts
the new defaults into Text to image, Image to image and Inpainting at once."""

from __future__ import annotations

import html
import gradio as gr

from studio.outputs import FILENAME_TOKENS
from studio.samplers import sampler_names
from studio.user_settings import MAX_PREVIEW_EVERY, SettingsError, SettingsLimits, UserSettings, UserSettingsStore, checked

from .streaming import SILENT, owner_of

PREVIEW_LABELS = [("The server's choice", ""), ("Latent (rough, fastest)", "latent"), ("TAESD (tiny VAE, close)", "taesd"),
                  ("Full VAE (exact, slowest)", "vae"), ("Off", "off")]
INSPECT_LABELS = {"attention": "Attention maps per word", "cfg": "What CFG does, per step"}
TAB_FIELDS = ("sampler_name", "steps", "width", "height", "cfg_scale")  # what the generation tabs take from here


def limits_of(job_service) -> SettingsLimits:
    settings = job_service.settings
    return SettingsLimits(samplers=tuple(sampler_names()), max_steps=settings.max_steps, max_size=settings.max_size)


def build(job_service, store: UserSettingsStore, limits: SettingsLimits) -> dict:
    settings = job_service.settings
    defaults = UserSettings()
    gr.Markdown("Your defaults, saved for your login on this server: every tab starts with them, on every page load. "
                "Saving puts them into Text to image, Image to image and Inpainting now.")
    with gr.Row():
        sampler_name = gr.Dropdown(sampler_names(legacy_variants=False), value=defaults.sampler_name, label="Default sampler",
                                   elem_id="settings-sampler")
        steps = gr.Slider(1, settings.max_steps, value=defaults.steps, step=1, label="Default steps", elem_id="settings-steps")
        cfg_scale = gr.Slider(0, 30, value=defaults.cfg_scale, step=0.5, label="Default CFG scale", elem_id="settings-cfg")
    with gr.Row():
        width = gr.Slider(0, settings.max_size, value=0, step=8, label="Default width", info="0 = the model's default size",
                          elem_id="settings-width")
        height = gr.Slider(0, settings.max_size, value=0, step=8, label="Default height", info="0 = the model's default size",
                           elem_id="settings-height")
    with gr.Row():
        preview = gr.Dropdown(PREVIEW_LABELS, value="", label="Live preview",
                              info=f"How each step is drawn while you wait; the server's choice is {settings.preview}",
                              elem_id="settings-preview")
        preview_every = gr.Number(0, precision=0, minimum=0, maximum=MAX_PREVIEW_EVERY, label="Preview every N steps",
                                  info="0 = the server's choice (every step; every 5th with the full VAE)",
                                  elem_id="settings-preview-every")
    filename_pattern = gr.Textbox("", label="File name pattern", max_lines=1, placeholder="[seed]-[prompt_words]",
                                  info="Empty: NNNNN-seed.png. Saved as NNNNN-<pattern>.png; "
                                       f"tokens {' '.join(f'[{t}]' for t in FILENAME_TOKENS)}",
                                  elem_id="settings-filename-pattern")
    inspect = gr.CheckboxGroup([(label, name) for name, label in INSPECT_LABELS.items()], value=[],
                               label="See inside sampling (Step previews tab)",
                               info="Captured for every job you start while on: the image stays the same; the job "
                                    "runs alone (not batched with others), attention a little slower",
                               elem_id="settings-inspect")
    with gr.Row():
        save = gr.Button("Save settings", variant="primary", elem_id="settings-save", scale=0, min_width=160)
        reset = gr.Button("Reset to defaults", elem_id="settings-reset", scale=0, min_width=180)
    status = gr.Markdown("", elem_id="settings-status", elem_classes=["studio-quiet"])
    controls = dict(sampler_name=sampler_name, steps=steps, width=width, height=height, cfg_scale=cfg_scale, preview=preview,
                    preview_every=preview_every, filename_pattern=filename_pattern, inspect=inspect)
    return dict(controls=controls, save=save, reset=reset, status=status, store=store, limits=limits)


def wire(tab: dict, blocks: gr.Blocks, panels: list) -> None:
    """Page load fills this tab and the generation tabs from the user's saved settings; Save and Reset write them."""
    store: UserSettingsStore = tab["store"]
    limits: SettingsLimits = tab["limits"]
    controls = tab["controls"]
    names = list(controls)
    panel_outputs = [getattr(p, name) for p in panels for name in TAB_FIELDS]

    def values(s: UserSettings) -> list:
        return [list(getattr(s, name)) if name == "inspect" else getattr(s, name) for name in names]

    def into_panels(s: UserSettings) -> list:
        return [getattr(s, name) for _ in panels for name in TAB_FIELDS]

    def on_load(request: gr.Request):
        saved = store.load(owner_of(request), limits)
        if saved is None:  # nothing saved: the tabs keep what they were built with
            return [gr.skip()] * (len(names) + len(panel_outputs))
        return values(saved) + into_panels(saved)

    def on_save(sampler_name, steps, width, height, cfg_scale, preview, preview_every, filename_pattern, inspect,
                request: gr.Request):
        given = dict(sampler_name=sampler_name, steps=steps, width=width, height=height, cfg_scale=cfg_scale, preview=preview,
                     preview_every=preview_every, filename_pattern=filename_pattern, inspect=inspect or ())
        owner = owner_of(request)
        try:
            s = checked(given, limits)
        except SettingsError as exc:
            raise gr.Error(html.escape(str(exc)), print_exception=False) from None
        store.save(owner, s)
        return [_said("Saved. New pages and the tabs now start with these.")] + into_panels(s)

    def on_reset(request: gr.Request):
        store.forget(owner_of(request))
        s = UserSettings()
        return values(s) + [_said("Back to the studio's defaults.")] + into_panels(s)

    blocks.load(on_load, None, list(controls.values()) + panel_outputs, **SILENT)
    # Queued (not SILENT): a gr.Error must show as a toast.
    private = dict(api_visibility="private", show_progress="hidden", concurrency_limit=None)
    tab["save"].click(on_save, list(controls.values()), [tab["status"]] + panel_outputs, **private)
    tab["reset"].click(on_reset, None, list(controls.values()) + [tab["status"]] + panel_outputs, **private)


def _said(text: str) -> str:
    return html.escape(text)
