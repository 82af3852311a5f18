"""The HTTP server's limits and batching defaults, in one place: `zoo serve`, its CLI flags, the demo's `--api`
and Ray read them here. The ZOO_* variables are read at import: set them before starting the server.
"""
from __future__ import annotations

import os

from .model import CHUNK

#: The most images (or the changer's pairs) one request may carry.
MAX_IMAGES = 64
#: The most images one onnxruntime run takes (`--max-batch`): requests are gathered up to it (a request with more
#: runs alone). By default the batch `predict_batch` runs.
MAX_BATCH = CHUNK
#: How long a batch waits for requests still decoding before it runs (`--batch-wait-ms`): a few milliseconds
#: against tens per ResNet-50 run.
BATCH_WAIT = 0.004
#: Requests admitted per model at once (`--max-queue`): decoding, waiting for a batch or running. The next get 503.
MAX_QUEUE = 256
#: Seconds a client is told to wait (Retry-After) when a model's queue is full.
RETRY_AFTER = 1
#: The pixels one request's images may claim in all (ZOO_MAX_REQUEST_PIXELS), read from their headers before any
#: is decoded: eight pairs of 12-megapixel photos fit; beside ZOO_MAX_PIXELS, the limit per image.
MAX_REQUEST_PIXELS = int(os.environ.get("ZOO_MAX_REQUEST_PIXELS", 200_000_000))
#: A request whose images claim this many pixels or fewer in all is decoded on the event loop: a hand-off to a
#: thread costs more than decoding a few thumbnails (64 images of 32x32 pixels are 65,536).
INLINE_DECODE_PIXELS = 65_536
#: Seconds a model that failed to load is answered with that failure before loading it is tried again.
FAILURE_MEMORY = 10.0
#: The largest request body accepted (ZOO_MAX_REQUEST_BYTES): a Content-Length over it is refused before the body
#: is read, and any body (chunked too) is counted as it is read and refused as soon as it passes it.
MAX_REQUEST_BYTES = int(os.environ.get("ZOO_MAX_REQUEST_BYTES", 64 * 2**20))
#: Seconds a client has to send a request's headers (from its first byte, or the connection's start) and then
#: its whole body (ZOO_READ_TIMEOUT): a client that sends them byte by byte is answered 408 and cut off.
READ_TIMEOUT = float(os.environ.get("ZOO_READ_TIMEOUT", 60))
