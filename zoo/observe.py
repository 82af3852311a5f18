"""What zoo's HTTP server tells its operators: a request id on every answer, an access log, Prometheus metrics and
its log lines as text or JSON.

Each server (each `create_app`) has its own metrics registry, so that several apps in one process (tests, the
demo beside the API) do not share counters.
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

LOG = logging.getLogger("zoo.serve")
ACCESS_LOG = logging.getLogger("zoo.access")
REQUEST_ID_HEADER = "x-request-id"
#: A request id a client may choose (echoed and logged as it came); any other gets a fresh one.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The media type of /metrics: Prometheus' text format, which every Prometheus version scrapes.
METRICS_MEDIA_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Seconds: from a cached answer (~1 ms) to a 64-image batch of 12-megapixel photos (seconds).
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's Prometheus metrics (`/metrics`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open files
        self.requests = Counter("zoo_http_requests", "HTTP requests answered, by route, method and status code",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("zoo_http_request_duration_seconds",
                                 "Time from a request's arrival to the end of its answer, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("zoo_batch_images", "Images (or pairs) in each onnxruntime run, by model",
                                    ["model"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("zoo_queue_depth", "Requests admitted to a model and not yet answered "
                                 "(decoding, waiting for a batch or running)", ["model"], registry=self.registry)
        self.images = Counter("zoo_images", "Images (or pairs) predicted, by model; rate() gives images per second",
                              ["model"], registry=self.registry)
        self.load_seconds = Gauge("zoo_model_load_seconds", "Seconds the last load of a model took (checks, "
                                  "session, warm-up)", ["model"], registry=self.registry)
        self.loaded = Gauge("zoo_model_loaded", "1 once a model is loaded in this server", ["model"],
                            registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Observe:
    """An ASGI middleware around the whole app (its guard included): gives every HTTP request an id (the client's
    `X-Request-ID` when it is a plain token, else this server's prefix and a count), echoes it in the answer, counts and times the
    request by route in `metrics`, and writes one access-log line when `access_log` is set."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False, routes: Any = None) -> None:
        self.app, self.metrics, self.access_log, self.routes = app, metrics, access_log, routes
        # New ids: this server's random prefix and a count, unique without a random draw per request.
        self.prefix, self.counter = secrets.token_hex(6), itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = offered if _CLIENT_REQUEST_ID.fullmatch(offered) else f"{self.prefix}-{next(self.counter):x}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets if the app fails before it answers (uvicorn answers 500)

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = self.route_of(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if self.access_log:
                client = scope.get("client") or ("-", 0)
                ACCESS_LOG.info("%s %s %s %d %.1fms", client[0], scope["method"], scope["path"], status,
                                seconds * 1000, extra={"request_id": request_id, "client": client[0],
                                                       "method": scope["method"], "path": scope["path"],
                                                       "status": status, "duration_ms": round(seconds * 1000, 3)})

    def route_of(self, scope: Scope) -> str:
        """The route's template (`/v1/models/{name}/predict`), not the path: one time series per route."""
        if "route" in scope:  # set by the router when the request reached a route
            return getattr(scope["route"], "path", "other")
        for route in self.routes or ():
            if route.matches(scope)[0] is Match.FULL:
                return getattr(route, "path", "other")
        return "other"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and an access line's fields."""

    FIELDS = ("request_id", "client", "method", "path", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        line.update({key: getattr(record, key) for key in self.FIELDS if hasattr(record, key)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"{text} id={record.request_id}" if hasattr(record, "request_id") else text


def configure_logging(json_lines: bool = False) -> None:
    """zoo's server logs (`zoo.serve`, `zoo.access`) on stderr, one line per record: text, or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter("%(asctime)s %(name)s %(message)s"))
    for logger in (LOG, ACCESS_LOG):
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
