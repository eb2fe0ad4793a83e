"""The Script dropdown at the bottom of Text to image and Image to image, as A1111's: "None", "Prompt matrix",
"Prompts from file or textbox", "SD upscale" (Image to image only) and "X/Y/Z plot", each showing its own controls.

Their values become the script's name and its script_args in A1111's order (plain functions: tests call them without
a server); the API endpoints take `script_name` and `script_args` (JSON) instead, through hidden inputs. The scripts
themselves are studio/scripts (reached through the job service); studio/ui/script_runs.py runs them for a tab."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import gradio as gr

from studio.contract import RequestError
from studio.samplers import SCHEDULE_TYPES, sampler_names
from studio.scripts import MAX_SCRIPT_IMAGES, SCRIPTS, prompt_matrix, prompts_from_file, sd_upscale, xyz
from studio.scripts.axes import SUPPORTED, tab_labels

from .extras import upscaler_names
from .networks import style_names, vae_names
from .options import hires_upscaler_names, offered_models
from .streaming import SILENT

log = logging.getLogger(__name__)

NO_SCRIPT = "None"
MAX_ARGS_CHARS = 2_000_000  # the API's script_args JSON (prompts from file takes up to 1,000,000 characters of lines)
TXT_MAX_BYTES = prompts_from_file.MAX_TEXT_CHARS  # a .txt file read into "List of prompt inputs" (in the browser)
AXES = "xyz"
VALUES_HINT = ("Comma-separated; ranges <code>1-5</code>, <code>1-10 (+2)</code>, <code>1-10 [5]</code>, "
               "<code>0.5-1 (+0.25)</code>; quote a value with a comma: <code>\"red, shiny\", blue</code>. "
               f"Every cell is a job of yours in the queue; at most {MAX_SCRIPT_IMAGES} images.")
MATRIX_HINT = ("Split the prompt with <code>|</code>: <code>a cat | red | hat</code> makes one image per combination of the "
               "parts after the first (4 here) and a grid of them.")
FILE_HINT = ("One prompt per line, or A1111's options: <code>--prompt \"a red fox\" --steps 10 --cfg_scale 5</code>. "
             "Each line is a job of yours.")
UPSCALE_HINT = "Will upscale the image by the selected scale factor; use width and height sliders to set tile size."


def script_titles(img2img: bool) -> list[str]:
    """The Script dropdown's choices: "None", then A1111's titles of the tab's scripts (in A1111's order)."""
    return [NO_SCRIPT] + [script.title for script in SCRIPTS if (script.img2img if img2img else script.txt2img)]


def axis_labels(img2img: bool) -> list[str]:
    """The X/Y/Z type choices: the tab's axis types (A1111's order) that this server supports."""
    return [label for label in tab_labels(img2img) if label in SUPPORTED]


def uses_dropdown(label: Any, csv_mode: Any) -> bool:
    """Whether an axis takes its values from the dropdown (A1111: axes with choices, unless csv_mode)."""
    axis = SUPPORTED.get(label) if isinstance(label, str) else None
    return bool(axis is not None and axis.choices and not csv_mode)


def axis_choices(job_service, label: Any) -> list[str]:
    """The values an axis' dropdown offers: samplers, schedule types, the models users may pick, hires upscalers, VAEs,
    styles; [] for an axis without choices (or when the list cannot be read)."""
    lists: dict[str, Callable[[], list[str]]] = {
        "Sampler": lambda: sampler_names(legacy_variants=False),
        "Hires sampler": lambda: sampler_names(legacy_variants=False),
        "Schedule type": lambda: [name for _, name in SCHEDULE_TYPES],
        "Checkpoint name": lambda: offered_models(job_service),
        "Hires upscaler": lambda: hires_upscaler_names(job_service),
        "VAE": lambda: vae_names(job_service),
        "Styles": lambda: style_names(job_service),
    }
    try:
        return list(lists[label]()) if label in lists else []
    except Exception:  # a folder that cannot be read must not take the panel down
        log.exception("Listing the values of the %s axis failed", label)
        return []


# ---- control values → script_args (A1111's order; raise RequestError with a message for the user)


def _flag(value: Any) -> bool:
    return bool(value) if value is not None else False


def _margin(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0 if value in (None, "") else value


def _dropdown(values: Any) -> list:
    if values in (None, ""):
        return []
    return list(values) if isinstance(values, (list, tuple)) else [values]


def xyz_args(x_type="Seed", x_values="", x_dropdown=None, y_type="Nothing", y_values="", y_dropdown=None, z_type="Nothing",
             z_values="", z_dropdown=None, draw_legend=True, include_lone_images=True, include_sub_grids=False,
             no_fixed_seeds=False, vary_seeds_x=False, vary_seeds_y=False, vary_seeds_z=False, margin_size=0,
             csv_mode=False) -> list:
    """X/Y/Z plot's controls → its 18 script_args. An axis takes what the panel shows for it: the dropdown's values
    (an axis with choices, unless "Use text inputs instead of dropdowns") or the text box's, never a hidden one's."""
    args = []
    for kind, text, chosen in ((x_type, x_values, x_dropdown), (y_type, y_values, y_dropdown), (z_type, z_values, z_dropdown)):
        kind = kind or "Nothing"
        dropdown = uses_dropdown(kind, csv_mode)
        args += [kind, "" if dropdown else (text or ""), _dropdown(chosen) if dropdown else []]
    return args + [_flag(draw_legend), _flag(include_lone_images), _flag(include_sub_grids), _flag(no_fixed_seeds),
                   _flag(vary_seeds_x), _flag(vary_seeds_y), _flag(vary_seeds_z), _margin(margin_size), _flag(csv_mode)]


def prompt_matrix_args(put_at_start=False, different_seeds=False, prompt_type="positive", variations_delimiter="comma",
                       margin_size=0) -> list:
    return [_flag(put_at_start), _flag(different_seeds), prompt_type or "positive", variations_delimiter or "comma",
            _margin(margin_size)]


def prompts_from_file_args(checkbox_iterate=False, checkbox_iterate_batch=False, prompt_position="start",
                           prompt_txt="") -> list:
    return [_flag(checkbox_iterate), _flag(checkbox_iterate_batch), prompt_position or "start", prompt_txt or ""]


def sd_upscale_args(overlap=64, upscaler="Lanczos", scale_factor=2.0) -> list:
    """SD upscale's controls → its script_args: (info, overlap, upscaler — by name —, scale_factor)."""
    return [None, _margin(overlap), upscaler or sd_upscale.NO_UPSCALER, scale_factor if scale_factor is not None else 2.0]


ARGS: dict[str, Callable[..., list]] = {xyz.TITLE: xyz_args, prompt_matrix.TITLE: prompt_matrix_args,
                                        prompts_from_file.TITLE: prompts_from_file_args, sd_upscale.TITLE: sd_upscale_args}


def api_script(script_name: Any, script_args: Any) -> Optional[tuple[str, Any]]:
    """The API's script_name / script_args (JSON: a list in A1111's order, or an object by argument name) → (name,
    args), or None for no script ("", "None")."""
    if script_name is None or (isinstance(script_name, str) and script_name.strip().lower() in ("", NO_SCRIPT.lower())):
        return None
    if not isinstance(script_name, str):
        raise RequestError("script_name must be a script's name, such as X/Y/Z plot.")
    if isinstance(script_args, (list, dict)):
        return script_name.strip(), script_args
    if script_args is None or (isinstance(script_args, str) and not script_args.strip()):
        return script_name.strip(), []
    if not isinstance(script_args, str) or len(script_args) > MAX_ARGS_CHARS:
        raise RequestError(f"script_args must be JSON text of at most {MAX_ARGS_CHARS:,} characters.")
    try:
        args = json.loads(script_args)
    except ValueError as exc:
        raise RequestError(f"script_args is not valid JSON ({exc.args[0] if exc.args else exc}).") from None
    if not isinstance(args, (list, dict)):
        raise RequestError("script_args must be a JSON list (A1111's order) or an object by argument name.")
    return script_name.strip(), args


# ---- controls


@dataclass
class ScriptPanel:
    """The Script dropdown, each script's box of controls (shown when it is chosen), and the API's hidden inputs."""

    tab: str
    script: gr.Dropdown
    boxes: dict[str, gr.Column]  # title → its controls' box
    controls: dict[str, list]  # title → its controls, in the order of its ARGS function
    api_script_name: gr.Textbox
    api_script_args: gr.Textbox
    api_trigger: gr.Button
    parts: dict = field(default_factory=dict)  # every control by name (tests, wiring)

    def inputs(self) -> list:
        """The browser's inputs: the dropdown and every script's controls."""
        return [self.script] + [c for controls in self.controls.values() for c in controls]

    def api_inputs(self) -> list:
        return [self.api_script_name, self.api_script_args]

    def call(self, values: dict) -> Optional[tuple[str, list]]:
        """The chosen script and its script_args from the browser's values ({component: value}); None for "None"."""
        title = values.get(self.script)
        if title in (None, "", NO_SCRIPT):
            return None
        if title not in ARGS or title not in self.controls:
            raise RequestError(f"Unknown script '{title}'. Choose one of {', '.join(self.controls)}.")
        return title, ARGS[title](*(values.get(control) for control in self.controls[title]))


def _hint(text: str, tab: str, name: str) -> gr.HTML:
    return gr.HTML(f"<div class='studio-script-hint'>{text}</div>", elem_id=f"{tab}-{name}-hint", padding=False)


def _xyz_controls(tab: str, img2img: bool, parts: dict) -> list:
    labels = axis_labels(img2img)
    for letter in AXES:
        with gr.Row(equal_height=True, elem_classes=["studio-axis-row"]):
            default = "Seed" if letter == "x" else "Nothing"
            parts[f"{letter}_type"] = gr.Dropdown(labels, value=default, label=f"{letter.upper()} type", scale=2, min_width=150,
                                                  elem_id=f"{tab}-xyz-{letter}-type")
            parts[f"{letter}_values"] = gr.Textbox("", label=f"{letter.upper()} values", scale=5, min_width=200, max_lines=3,
                                                   placeholder="e.g. 1, 2, 3 or 1-10 (+2)", elem_id=f"{tab}-xyz-{letter}-values")
            parts[f"{letter}_dropdown"] = gr.Dropdown([], value=[], multiselect=True, label=f"{letter.upper()} values", scale=5,
                                                      min_width=200, visible=False, elem_id=f"{tab}-xyz-{letter}-dropdown")
    _hint(VALUES_HINT, tab, "xyz")
    with gr.Row(elem_classes=["studio-script-checks"]):
        parts["draw_legend"] = gr.Checkbox(True, label="Draw legend", elem_id=f"{tab}-xyz-legend", min_width=160)
        parts["include_lone_images"] = gr.Checkbox(True, label="Include Sub Images", elem_id=f"{tab}-xyz-lone", min_width=160)
        parts["include_sub_grids"] = gr.Checkbox(False, label="Include Sub Grids", elem_id=f"{tab}-xyz-sub-grids", min_width=160)
    with gr.Row(elem_classes=["studio-script-checks"]):
        parts["no_fixed_seeds"] = gr.Checkbox(False, label="Keep -1 for seeds", elem_id=f"{tab}-xyz-keep-seeds", min_width=160)
        for letter in AXES:
            parts[f"vary_seeds_{letter}"] = gr.Checkbox(False, label=f"Vary seeds for {letter.upper()}", min_width=140,
                                                        elem_id=f"{tab}-xyz-vary-{letter}")
    with gr.Row(equal_height=True):
        parts["csv_mode"] = gr.Checkbox(False, label="Use text inputs instead of dropdowns", elem_id=f"{tab}-xyz-csv", min_width=200)
        parts["xyz_margin"] = gr.Slider(0, xyz.MAX_MARGIN, value=0, step=2, label="Grid margins (px)", elem_id=f"{tab}-xyz-margin",
                                        min_width=240)
    names = [f"{letter}_{what}" for letter in AXES for what in ("type", "values", "dropdown")]
    names += ["draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds", "vary_seeds_x", "vary_seeds_y",
              "vary_seeds_z", "xyz_margin", "csv_mode"]
    return [parts[name] for name in names]


def _matrix_controls(tab: str, parts: dict) -> list:
    _hint(MATRIX_HINT, tab, "matrix")
    with gr.Row(elem_classes=["studio-script-checks"]):
        parts["put_at_start"] = gr.Checkbox(False, label="Put variable parts at start of prompt", elem_id=f"{tab}-matrix-start")
        parts["different_seeds"] = gr.Checkbox(False, label="Use different seed for each picture", elem_id=f"{tab}-matrix-seeds")
    with gr.Row():
        parts["prompt_type"] = gr.Radio(["positive", "negative"], value="positive", label="Select prompt", elem_id=f"{tab}-matrix-prompt")
        parts["variations_delimiter"] = gr.Radio(["comma", "space"], value="comma", label="Select joining char",
                                                 elem_id=f"{tab}-matrix-delimiter")
    parts["matrix_margin"] = gr.Slider(0, prompt_matrix.MAX_MARGIN, value=0, step=2, label="Grid margins (px)",
                                       elem_id=f"{tab}-matrix-margin")
    return [parts[name] for name in ("put_at_start", "different_seeds", "prompt_type", "variations_delimiter", "matrix_margin")]


def _file_controls(tab: str, parts: dict) -> list:
    _hint(FILE_HINT, tab, "file")
    with gr.Row(elem_classes=["studio-script-checks"]):
        parts["checkbox_iterate"] = gr.Checkbox(False, label="Iterate seed every line", elem_id=f"{tab}-file-iterate")
        parts["checkbox_iterate_batch"] = gr.Checkbox(False, label="Use same random seed for all lines", elem_id=f"{tab}-file-same-seed")
    parts["prompt_position"] = gr.Radio(["start", "end"], value="start", label="Insert prompts at the", elem_id=f"{tab}-file-position")
    parts["prompt_txt"] = gr.Textbox("", label="List of prompt inputs", lines=4, max_lines=12, max_length=TXT_MAX_BYTES,
                                     placeholder="a red fox\na blue bird\n--prompt \"a cat\" --steps 10", elem_id=f"{tab}-file-prompts")
    # Read in the browser (the page script): the text goes into the box above; nothing is uploaded.
    gr.HTML(f"<label class='studio-txt-file'>Load prompts from a .txt file <input type='file' accept='.txt,text/plain' "
            f"data-studio-text='{tab}-file-prompts' data-max-bytes='{TXT_MAX_BYTES}'></label>"
            f"<span class='studio-txt-file-note' data-for='{tab}-file-prompts'></span>", elem_id=f"{tab}-file-upload", padding=False)
    return [parts[name] for name in ("checkbox_iterate", "checkbox_iterate_batch", "prompt_position", "prompt_txt")]


def _upscale_controls(job_service, tab: str, parts: dict) -> list:
    _hint(UPSCALE_HINT, tab, "upscale")
    names = upscaler_names(job_service)
    with gr.Row():
        parts["overlap"] = gr.Slider(0, 256, value=64, step=16, label="Tile overlap", elem_id=f"{tab}-upscale-overlap")
        parts["scale_factor"] = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Scale Factor", elem_id=f"{tab}-upscale-scale")
    parts["upscaler"] = gr.Radio(names, value="Lanczos" if "Lanczos" in names else names[0], label="Upscaler",
                                 elem_id=f"{tab}-upscale-upscaler")
    return [parts[name] for name in ("overlap", "upscaler", "scale_factor")]


def build_script_panel(job_service, tab: str, img2img: bool) -> ScriptPanel:
    """The Script dropdown and its boxes (at the bottom of the tab's settings column)."""
    titles = script_titles(img2img)
    parts: dict = {}
    boxes: dict = {}
    controls: dict = {}
    with gr.Column(elem_id=f"{tab}-scripts", elem_classes=["studio-scripts"]):
        script = gr.Dropdown(titles, value=NO_SCRIPT, label="Script", elem_id=f"{tab}-script")
        builders = {xyz.TITLE: lambda: _xyz_controls(tab, img2img, parts),
                    prompt_matrix.TITLE: lambda: _matrix_controls(tab, parts),
                    prompts_from_file.TITLE: lambda: _file_controls(tab, parts),
                    sd_upscale.TITLE: lambda: _upscale_controls(job_service, tab, parts)}
        for title in titles[1:]:
            slug = title.lower().replace("/", "").replace(" ", "-")
            with gr.Column(visible=False, elem_id=f"{tab}-script-{slug}", elem_classes=["studio-script-box"]) as box:
                controls[title] = builders[title]()
            boxes[title] = box
    # The API's script_name / script_args (never shown), and the trigger its endpoint listens on.
    api_name = gr.Textbox("", visible=False, label="script_name")
    api_args = gr.Textbox("", visible=False, label="script_args")
    api_trigger = gr.Button(f"{tab} (API)", visible=False)
    panel = ScriptPanel(tab, script, boxes, controls, api_name, api_args, api_trigger, parts)
    _wire(job_service, panel)
    return panel


def _wire(job_service, p: ScriptPanel) -> None:
    titles = list(p.boxes)

    def show(title):
        return [gr.Column(visible=title == name) for name in titles]

    p.script.change(show, p.script, [p.boxes[name] for name in titles], **SILENT)
    if xyz.TITLE not in p.controls:
        return
    x = p.parts
    kinds = [x[f"{letter}_type"] for letter in AXES]
    dropdowns = [x[f"{letter}_dropdown"] for letter in AXES]

    def axes(*values):
        labels, csv_mode, chosen = values[:3], values[3], values[4:]
        updates = []
        for label, kept in zip(labels, chosen):
            if uses_dropdown(label, csv_mode):
                choices = axis_choices(job_service, label)
                keep = [value for value in _dropdown(kept) if value in choices]
                updates += [gr.Textbox(visible=False), gr.Dropdown(choices=choices, value=keep, visible=True)]
            else:
                updates += [gr.Textbox(visible=True), gr.Dropdown(visible=False)]
        return updates

    outputs = [c for letter in AXES for c in (x[f"{letter}_values"], x[f"{letter}_dropdown"])]
    gr.on([kind.change for kind in kinds] + [x["csv_mode"].change], axes, kinds + [x["csv_mode"]] + dropdowns, outputs, **SILENT)


CSS = """
.studio-scripts { margin-top: 4px; }
.studio-script-box { padding: 0; gap: 8px; }
.studio-script-hint { font-size: 0.85em; color: var(--body-text-color-subdued); padding: 2px 2px 0; }
.studio-script-hint code { font-size: 0.95em; }
.studio-axis-row { align-items: flex-end; }
.studio-script-checks { gap: 4px 12px; }
.studio-txt-file { display: inline-flex; align-items: center; gap: 8px; cursor: pointer; font-size: 0.9em; padding: 4px 2px; }
.studio-txt-file input[type=file] { font-size: 0.9em; }
.studio-txt-file-note { font-size: 0.85em; margin-left: 8px; color: var(--body-text-color-subdued); }
.studio-txt-file-note.studio-txt-error { color: #b91c1c; }
"""

# In the page script: a .txt file picked under "List of prompt inputs" is read in the browser (at most the size the
# script takes) and put into the box, as if typed; nothing is uploaded to the server.
TXT_JS = r"""
  document.addEventListener('change', (e) => {
    const input = e.target;
    if (!input || !input.matches || !input.matches('input[type=file][data-studio-text]')) return;
    const target = input.dataset.studioText;
    if (!/^[a-z0-9-]+$/.test(target)) return;
    const note = document.querySelector(`.studio-txt-file-note[data-for='${target}']`);
    const say = (text, bad) => { if (note) { note.textContent = text; note.classList.toggle('studio-txt-error', !!bad); } };
    const file = input.files && input.files[0];
    if (!file) return;
    const limit = Number(input.dataset.maxBytes || 0);
    if (limit && file.size > limit) { say(`${file.name} is too big (over ${limit.toLocaleString()} bytes).`, true); input.value = ''; return; }
    file.text().then((text) => {
      const area = document.querySelector(`#${target} textarea`);
      if (!area) return;
      area.value = text.replace(/\r\n?/g, '\n');
      area.dispatchEvent(new Event('input', { bubbles: true }));
      const lines = area.value.split('\n').filter((l) => l.trim()).length;
      say(`Read ${file.name}: ${lines} line${lines === 1 ? '' : 's'}.`, false);
      input.value = '';
    }, () => say(`Could not read ${file.name}.`, true));
  });
"""
