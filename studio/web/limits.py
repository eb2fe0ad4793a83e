"""A cap on request bodies, enforced while they stream in. A Content-Length header can be absent (chunked transfer) or
honest-looking while the body is not, so counting the bytes as the app receives them is the only check that holds:
past the cap the app is told the client went away, the client gets a 413, and no more of the body is read.
Pure ASGI, so it wraps any app (FastAPI, Gradio, Starlette) without buffering anything."""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def too_large_body(max_bytes: int) -> bytes:
    return json.dumps({"error": "TooLarge", "detail": f"The request is too large (limit {max_bytes / 2**20:g} MB)."}).encode()


class BodyLimit:
    """Answer 413 to an HTTP request whose body is over `max_bytes`: at once from its Content-Length, otherwise as soon
    as the running total of the body passes the cap (then the app's next receive() is a disconnect)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return

        received = 0
        over = False  # the cap was passed: the app reads no more
        started = False  # the app began its response, so the 413 can no longer be sent
        answered = False  # this middleware sent the 413: the app's own response goes nowhere

        async def limited_receive():
            nonlocal received, over, answered
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    if not started:
                        answered = True
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:
                raise
            # The app failed on the disconnect it was handed (Starlette raises ClientDisconnect): expected, answered.
            log.debug("request body over %d bytes refused", self.max_bytes, exc_info=True)

    async def _refuse(self, send) -> None:
        body = too_large_body(self.max_bytes)
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),  # the rest of the body stays unread: this connection cannot carry another
            ],
        })
        await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server itself refuses a malformed length
    return None
