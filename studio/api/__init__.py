"""The HTTP API: A1111-compatible routes under /sdapi/v1 and the studio's per-user routes under /studio. No torch."""

from .a1111 import build_router
from .state import ServerState

__all__ = ["build_router", "ServerState"]
