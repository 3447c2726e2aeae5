"""The request gate: an API request's key is checked, and its body capped, before any of its body is read.

FastAPI reads and parses a JSON body before it resolves a route's dependencies, so a key check written as a
dependency came after the server had buffered whatever an unauthenticated client sent, of any size. This ASGI
middleware runs first: a request to a keyed path without a valid key gets 401 before one byte of its body is
received; a declared Content-Length over the cap gets 413 at once; a body that grows past the cap while it
streams (chunked, or lying about its length) is cut off there and answered 413, whatever the route was doing
with it. Multipart bodies (uploads) get the upload cap, every other body the request cap.

The key (serve/auth.py), its scope checked, is left in the request's state for the routes. Every answer
says it may not be framed by another site (X-Frame-Options; the UI's pages also say so in their CSP).
"""
from __future__ import annotations

from anyio import to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunesmith.serve.auth import KEYED_PREFIXES, check_scope, key_from_header
from tunesmith.serve.errors import APIError, error_response

MULTIPART_OVERHEAD = 64 * 1024  # part headers and the small fields around an uploaded file


class BodyTooLarge(Exception):
    """Raised from `receive` when a body passes its cap; the gate answers 413 in place of the route."""


def too_large(limit: int, multipart: bool) -> APIError:
    if multipart:
        return APIError(413, f"File too large: the limit is {limit - MULTIPART_OVERHEAD} bytes.", param="file",
                        code="file_too_large")
    return APIError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


def is_multipart(content_type: str) -> bool:
    return content_type.lower().startswith("multipart/form-data")


class RequestGate:
    def __init__(self, app: ASGIApp, max_request_bytes: int, max_upload_bytes: int):
        self.app, self.max_request_bytes, self.max_upload_bytes = app, max_request_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            if scope["path"].startswith(KEYED_PREFIXES):
                db = scope["app"].state.db
                key = await to_thread.run_sync(key_from_header, db, headers.get("authorization", ""))
                check_scope(key, scope["method"], scope["path"])
                scope.setdefault("state", {})["key"] = key
            multipart = is_multipart(headers.get("content-type", ""))
            limit = self.max_upload_bytes + MULTIPART_OVERHEAD if multipart else self.max_request_bytes
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large(limit, multipart)
        except APIError as error:
            await answer(send, error)
            return
        await self.capped(scope, receive, send, limit, multipart)

    async def capped(self, scope: Scope, receive: Receive, send: Send, limit: int, multipart: bool) -> None:
        """Run the app with a `receive` that stops at `limit` bytes; past it, whatever the app answers becomes 413."""
        received, over, started = 0, False, False

        async def capped_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the route's answer to a body cut short (a parse error, say) is replaced below
                return
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-frame-options", b"DENY")]}
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await answer(send, too_large(limit, multipart))


async def answer(send: Send, error: APIError) -> None:
    response = error_response(error.status, error.message, error.param, error.code, error.headers, error.type)
    headers = [*response.raw_headers, (b"x-frame-options", b"DENY")]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
