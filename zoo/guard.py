"""What every request to zoo's HTTP servers must pass before the app reads it: the Host header, the API key, the
size of the body and the time it takes to arrive; and the rules for where a server may listen.

`zoo serve`, the demo with `--api` and the Ray Serve deployment apply the same `Guard`.
"""
from __future__ import annotations

import asyncio
import hmac
import os

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ZooError
from .limits import MAX_REQUEST_BYTES, READ_TIMEOUT
from .loopback import LOOPBACK_HOSTS, loopback

#: Host names a server on the loopback answers (ZOO_ALLOWED_HOSTS, comma-separated, "*" for any), besides the
#: address it listens on: a page that rebinds its own DNS name to 127.0.0.1 does not reach the API.
ALLOWED_HOSTS_ENV = "ZOO_ALLOWED_HOSTS"
API_KEY_ENV = "ZOO_API_KEY"
#: The health routes: answered without the API key, so that a load balancer or an orchestrator can probe them.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


class ServeError(ZooError):
    """A server cannot start as asked (e.g. a public address without an API key)."""


class Guard:
    """Refuses a request for a Host name not in `allowed_hosts` (400), one under `guarded` paths (but OPEN_PATHS)
    without the API key (401), or one whose Content-Length is over MAX_REQUEST_BYTES (413), before the app reads
    it; then counts and times the body as the app reads it (`BodyLimits`). A plain ASGI middleware: FastAPI's
    `@app.middleware` costs a task group per request."""

    def __init__(self, app: ASGIApp, api_key: str | None, guarded: tuple[str, ...] = ("/",),
                 allowed_hosts: tuple[str, ...] | None = None) -> None:
        self.app, self.api_key, self.guarded = app, api_key, guarded
        self.allowed_hosts = None if allowed_hosts is None or "*" in allowed_hosts else \
            {host.strip().strip("[]").lower() for host in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope["path"], Headers(scope=scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await BodyLimits(self.app).run(scope, receive, send)

    def refusal(self, path: str, headers: Headers) -> JSONResponse | None:
        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            return JSONResponse({"detail": f"this server does not answer for that Host header ({ALLOWED_HOSTS_ENV} "
                                           "lists the names it answers)"}, 400)
        if self.api_key is not None and path not in OPEN_PATHS and path.startswith(self.guarded):
            scheme, _, token = headers.get("authorization", "").strip().partition(" ")
            # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
            if not (hmac.compare_digest(token.strip().encode(), self.api_key.encode()) & (scheme.lower() == "bearer")):
                return JSONResponse({"detail": "missing or wrong API key: send 'Authorization: Bearer KEY'"}, 401)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_REQUEST_BYTES):
            return too_large()
        return None


def host_name(host: str) -> str:
    """The name in a Host header, without its port: `[::1]:8000` -> `::1`, `Example.org:80` -> `example.org`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def too_large() -> JSONResponse:
    return JSONResponse({"detail": f"the request is over {MAX_REQUEST_BYTES} bytes (ZOO_MAX_REQUEST_BYTES)"}, 413,
                        headers={"Connection": "close"})


def too_slow() -> JSONResponse:
    return JSONResponse({"detail": f"the request's body took over {READ_TIMEOUT:g} s to arrive (ZOO_READ_TIMEOUT)"},
                        408, headers={"Connection": "close"})


class BodyLimits:
    """One request's body as the app reads it, counted and timed: past MAX_REQUEST_BYTES (chunked or not, whatever
    Content-Length said) or READ_TIMEOUT seconds, the app is told the client left, nothing more is read, and the
    client gets 413 or 408 instead of the app's answer (unless the app had already begun to answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.received = 0
        self.refusal: JSONResponse | None = None
        self.started = False  # whether a response (the app's or the refusal) has begun
        self.body_done = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT

        async def counted_receive() -> dict:
            if self.refusal is not None:
                return {"type": "http.disconnect"}
            if self.body_done:  # only a disconnect can come now: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                self.refuse(too_slow())
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                self.body_done = not message.get("more_body", False)
                self.received += len(message.get("body", b""))
                if self.received > MAX_REQUEST_BYTES:
                    self.refuse(too_large())
                    return {"type": "http.disconnect"}
            return message

        async def send_refusal() -> None:
            if not self.started:
                self.started = True
                await self.refusal(scope, receive, send)

        async def guarded_send(message: dict) -> None:
            if self.refusal is not None:
                await send_refusal()  # the app's answer after a refusal goes nowhere
                return
            self.started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if self.refusal is None:
                raise
        if self.refusal is not None:
            await send_refusal()

    def refuse(self, response: JSONResponse) -> None:
        if self.refusal is None and not self.started:
            self.refusal = response




def check_binding(host: str, api_key: str | None, no_auth: bool) -> None:
    """Refuse to listen beyond the loopback without an API key, unless `--no-auth` says so explicitly."""
    if not loopback(host) and api_key is None and not no_auth:
        raise ServeError(f"listening on {host} needs an API key (--api-key or {API_KEY_ENV}), "
                         "or --no-auth to serve without one.")


def allowed_hosts(host: str) -> tuple[str, ...] | None:
    """The Host header names a server listening on `host` answers: $ZOO_ALLOWED_HOSTS if set (comma-separated;
    "*": any), else on the loopback its names and `host`, beyond it any (None)."""
    listed = os.environ.get(ALLOWED_HOSTS_ENV)
    if listed is not None:
        return tuple(name.strip() for name in listed.split(",") if name.strip())
    return (*LOOPBACK_HOSTS, host) if loopback(host) else None


def timed_protocol(seconds: float) -> type:
    """uvicorn's HTTP protocol (httptools' parser where it is installed, which costs a fraction of h11's per
    request; else h11), which waits for a request's headers as long as they take, with a limit: headers not
    complete `seconds` after the connection opened (or after the first byte following an answer) are answered
    408 and the connection closed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Protocol
    except ImportError:  # httptools is not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as Protocol

    body = b'{"detail":"the request\'s headers took too long to arrive (ZOO_READ_TIMEOUT)"}'
    answer = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
              b"content-length: %d\r\n\r\n%s" % (len(body), body))

    class TimedProtocol(Protocol):  # type: ignore[valid-type,misc]
        header_timer: asyncio.TimerHandle | None = None

        def waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.header_timer = self.loop.call_later(seconds, self.headers_too_slow)

        def data_received(self, data: bytes) -> None:
            if self.header_timer is None and self.waiting_for_headers():
                self.header_timer = self.loop.call_later(seconds, self.headers_too_slow)
            super().data_received(data)
            if self.header_timer is not None and not self.waiting_for_headers():
                self.header_timer.cancel()
                self.header_timer = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None
            super().connection_lost(exc)

        def headers_too_slow(self) -> None:
            self.header_timer = None
            if self.waiting_for_headers() and not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

    return TimedProtocol
