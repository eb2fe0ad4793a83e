"""Who may do what, one rule for every front end (the UI, Gradio's API, /sdapi, /studio): who is an admin, and which
model a user's request may run. Plain Python: no torch, no web framework; the engine is reached only through its
public methods.

Why one place: a model name is a path on the server's disk. Only an admin may name paths or hub ids (a pickle
checkpoint runs code when loaded); everyone else picks by name from the operator's list, and a refusal never says
whether a path exists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Optional, Protocol

from .contract import LOCAL_USER, RequestError

NAME_SHOWN_MAX = 120  # characters of a refused name echoed back: enough to recognise it, not a megabyte of it


class ModelRefused(RequestError):
    """A model the caller may not run (or that is not offered). The message lists the models they may pick."""


class Logins(Protocol):
    """The server's accounts (studio.web.auth.Users): only is_admin is needed here."""

    def is_admin(self, user: str) -> bool: ...


def is_loopback(host: Optional[str]) -> bool:
    """A client on this machine (127.0.0.0/8, ::1; an IPv6 zone suffix is allowed)."""
    try:
        return ipaddress.ip_address((host or "").split("%")[0]).is_loopback
    except ValueError:
        return False


def offered_models(engine) -> list[str]:
    """The operator's list: engine.available_models() plus the model the engine runs by default (it may have been
    unloaded by another model, and users keep their right to it)."""
    names = list(engine.available_models())
    current = getattr(engine, "current_model", None)
    if current and current not in names:
        names.append(current)
    return names


def match_offered(wanted: Optional[str], offered: list[str]) -> Optional[str]:
    """The offered model that `wanted` names — by title, file name or stem, an A1111 ` [hash]` suffix allowed — or
    None. Only names are compared: nothing on disk is looked at."""
    name = (wanted or "").strip()
    if name.endswith("]") and " [" in name:
        name = name[: name.rindex(" [")]
    if not name:
        return None
    for model in offered:
        file_name = model.rsplit("/", 1)[-1]
        if name in (model, file_name, file_name.rsplit(".", 1)[0]):
            return model
    return None


def refusal(wanted: str, offered: list[str], admin: bool) -> ModelRefused:
    """The same words whatever `wanted` is (an existing path or not): it lists what may be picked instead."""
    shown = wanted if len(wanted) <= NAME_SHOWN_MAX else wanted[:NAME_SHOWN_MAX] + "…"
    return ModelRefused(
        f"Model {shown!r} is not available on this server. Available: {', '.join(offered) or 'none'}."
        + ("" if admin else " (Only an admin can load other models.)")
    )


class Access:
    """The server's rules on admins and models.

    logins: the accounts when the server has logins (anything with is_admin(user)), None when it has none — then
    every request is LOCAL_USER and only a client on this machine is an admin."""

    def __init__(self, engine, logins: Optional[Logins] = None):
        self.engine = engine
        self.logins = logins

    def is_admin(self, user: str, client_host: Optional[str]) -> bool:
        """With logins: the users named by --admin. Without: the operator at this machine (a loopback client) —
        never a remote client of an unauthenticated --listen server."""
        if self.logins is None:
            return user == LOCAL_USER and is_loopback(client_host)
        return bool(self.logins.is_admin(user))

    def offered_models(self) -> list[str]:
        return offered_models(self.engine)

    def resolve_model(self, wanted: str, admin: bool) -> str:
        """The model `wanted` names: an offered one by its listed name; for an admin, else `wanted` itself (a path
        or hub id, checked only when it loads). Raises ModelRefused."""
        offered = self.offered_models()
        found = match_offered(wanted, offered)
        if found is not None:
            return found
        name = (wanted or "").strip()
        if admin and name:
            return name
        raise refusal(wanted or "", offered, admin)

    def model_for_request(self, user: str, client_host: Optional[str], wanted: Optional[str]) -> Optional[str]:
        """What GenerationRequest.model should be for this caller: None (the engine's model) when nothing is asked,
        else resolve_model's answer. Raises ModelRefused (a RequestError) with a message for the user."""
        if wanted is None or not str(wanted).strip():
            return None
        if not isinstance(wanted, str):
            raise ModelRefused("The model must be given by its name.")
        return self.resolve_model(wanted, self.is_admin(user, client_host))

    def submit(self, request, user: str, client_host: Optional[str]):
        """engine.submit under this rule: the request's model resolved for the caller, and only an admin's request
        may name a model outside the operator's list. Raises RequestError (ModelRefused, QueueFullError, ...)."""
        admin = self.is_admin(user, client_host)
        model = None if request.model is None else self.model_for_request(user, client_host, request.model)
        return self.engine.submit(replace(request, model=model), user, may_name_any_model=admin)
