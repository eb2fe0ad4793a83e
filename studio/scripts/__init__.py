"""A1111's scripts (its `script_name` / `script_args`), one module each: "X/Y/Z plot" (xyz.py), "Prompt matrix"
(prompt_matrix.py), "Prompts from file or textbox" (prompts_from_file.py) and, for img2img, "SD upscale"
(sd_upscale.py). A script turns one GenerationRequest and its arguments into a Plan — the generations it needs,
every one checked, and the image count capped (MAX_SCRIPT_IMAGES), before any runs — and runner.py runs the plan
through the job service as the caller's own jobs, then assembles its pictures (grids drawn in grids.py).

Front ends reach this through JobService.plan_script / run_script. Plain Python and PIL: no torch, no web."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..contract import GenerationRequest, RequestError
from . import prompt_matrix, prompts_from_file, sd_upscale, xyz
from .common import MAX_SCRIPT_IMAGES, Output, Plan, PlanContext, ScriptResult
from .runner import ScriptStopped, run_plan


@dataclass(frozen=True)
class Script:
    title: str  # A1111's title; its API name is the title in lower case
    plan: Callable[[PlanContext, GenerationRequest, object], Plan]
    args_info: Callable[[object, bool], list[dict]]  # (service, img2img) → A1111's script-info args
    txt2img: bool = True
    img2img: bool = True

    @property
    def name(self) -> str:
        return self.title.lower()


# A1111 lists its scripts by file name: prompt_matrix, prompts_from_file, sd_upscale, xyz_grid.
SCRIPTS: tuple[Script, ...] = (
    Script(prompt_matrix.TITLE, prompt_matrix.plan, lambda service, img2img: prompt_matrix.script_args_info(img2img)),
    Script(prompts_from_file.TITLE, prompts_from_file.plan,
           lambda service, img2img: prompts_from_file.script_args_info(img2img)),
    Script(sd_upscale.TITLE, sd_upscale.plan,
           lambda service, img2img: sd_upscale.script_args_info([u["name"] for u in service.upscalers()]), txt2img=False),
    Script(xyz.TITLE, xyz.plan, lambda service, img2img: xyz.script_args_info(img2img)),
)


def script_names(img2img: bool) -> list[str]:
    """The names GET /sdapi/v1/scripts lists for a tab (A1111's lower-case titles)."""
    return [script.name for script in SCRIPTS if (script.img2img if img2img else script.txt2img)]


def find_script(name, img2img: bool) -> Script:
    """The script `name` names (A1111's title, any case). Raises RequestError naming the tab's scripts."""
    tab = "img2img" if img2img else "txt2img"
    known = ", ".join(script_names(img2img))
    wanted = name.strip().lower() if isinstance(name, str) else None
    found: Optional[Script] = next((s for s in SCRIPTS if s.name == wanted), None)
    if found is None:
        shown = repr(name) if not isinstance(name, str) else f"'{name[:100]}'"
        raise RequestError(f"Unknown script {shown}. Scripts for {tab}: {known}.")
    if not (found.img2img if img2img else found.txt2img):
        raise RequestError(f"'{found.title}' is not a {tab} script. Scripts for {tab}: {known}.")
    return found


def plan_script(service, name, request: GenerationRequest, script_args, user: str, client_host: Optional[str],
                img2img: bool) -> Plan:
    """Check a script call and expand it into its generations. Raises RequestError before anything runs."""
    script = find_script(name, img2img)
    return script.plan(PlanContext(service, user, client_host, img2img), request, script_args)


def script_info(service) -> list[dict]:
    """GET /sdapi/v1/script-info: A1111's entries for every script of both tabs."""
    return [{"name": script.name, "is_alwayson": False, "is_img2img": img2img, "args": script.args_info(service, img2img)}
            for img2img in (False, True) for script in SCRIPTS if (script.img2img if img2img else script.txt2img)]


__all__ = ["MAX_SCRIPT_IMAGES", "Output", "Plan", "SCRIPTS", "Script", "ScriptResult", "ScriptStopped", "find_script",
           "plan_script", "run_plan", "script_info", "script_names"]
