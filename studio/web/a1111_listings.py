"""A1111's listing routes under /sdapi/v1 that have little or nothing behind them in the studio, answered in A1111's
shapes (an A1111 client never meets a 404): cmd-flags, hypernetworks, face-restorers, latent-upscale-modes, scripts,
script-info (the scripts of studio/scripts), extensions; and A1111's answer to a progress poll when the caller has
no job. No torch.

cmd-flags is a safe subset of A1111's command-line flags with the studio's values: never a path, a user name, a
password, a key or a token."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Request

from ..scripts import script_info, script_names
from ..upscalers import LATENT_NAMES

WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # what a server started with --listen is bound to


def idle_progress() -> dict[str, Any]:
    """A1111's GET /sdapi/v1/progress while no job runs (its progressapi when job_count is 0, with a fresh
    shared.state): progress 0 and job_count 0, which is what webuiapi's util_wait_for_ready waits for."""
    state = {
        "skipped": False,
        "interrupted": False,
        "stopping_generation": False,
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}


def cmd_flags(service, server: Optional[tuple]) -> dict[str, Any]:
    """A1111's cmd_opts names with the studio's values where it has them (server: the ASGI scope's (host, port) the
    server is bound to). Paths, logins, TLS files and secrets are left out, not blanked."""
    info = service.info()
    settings = service.settings
    host, port = (server[0], server[1]) if server and len(server) >= 2 else (None, None)
    return {
        "listen": host in WILDCARD_HOSTS if host is not None else False,
        "port": port,
        "api": True,
        "nowebui": False,
        "share": False,
        "no_half": info.dtype == "float32",
        "no_half_vae": info.dtype == "float32",
        "precision": "full" if info.dtype == "float32" else "autocast",
        "xformers": info.attention == "xformers",
        "force_enable_xformers": False,
        "opt_sdp_attention": info.attention == "sdpa",
        "opt_sdp_no_mem_attention": False,
        "medvram": False,
        "medvram_sdxl": False,
        "lowvram": False,
        "lowram": False,
        "use_cpu": ["all"] if info.device == "cpu" else [],
        "max_batch_count": settings.max_batch_count,
        "freeze_settings": False,
        "enable_insecure_extension_access": False,
        "disable_all_extensions": True,
        "disable_extra_extensions": True,
        "skip_version_check": True,
        "api_log": False,
        "no_gradio_queue": False,
    }


def register_listing_routes(router: APIRouter, state) -> None:
    """Add the listing routes to the A1111 router (state: the ServerState)."""
    service = state.service

    @router.get("/sdapi/v1/cmd-flags")
    def get_cmd_flags(request: Request):
        return cmd_flags(service, request.scope.get("server"))

    @router.get("/sdapi/v1/hypernetworks")
    def hypernetworks():
        return []  # A1111: [{"name", "path"}]; hypernetworks are not supported here

    @router.get("/sdapi/v1/face-restorers")
    def face_restorers():
        return service.face_restorers()  # A1111: [{"name", "cmd_dir"}], the installed ones

    @router.get("/sdapi/v1/latent-upscale-modes")
    def latent_upscale_modes():
        return [{"name": name} for name in LATENT_NAMES]

    @router.get("/sdapi/v1/scripts")
    def scripts():
        return {"txt2img": script_names(img2img=False), "img2img": script_names(img2img=True)}  # studio/scripts

    @router.get("/sdapi/v1/script-info")
    def get_script_info():
        return script_info(service)

    @router.get("/sdapi/v1/extensions")
    def extensions():
        return []
