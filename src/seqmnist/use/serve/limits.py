"""The request body limit, answered in JSON like every other error.

FastAPI's own ``max_body_size`` answers a request whose Content-Length is
over the limit in plain text, whatever the application's error handlers
say; this one refuses such a request before reading any of it and counts a
body with no length (chunked) as it arrives, raising the 413 into the
application, where the JSON error handler answers it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int) -> str:
    return (
        f"the request body is over the {limit / 2**20:g} MiB limit; send a smaller image "
        "(a digit needs only a few kB)"
    )


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse({"detail": too_large(self.max_bytes)}, 413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)
