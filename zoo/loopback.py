"""What keeps a server of this machine to itself: the loopback's names, and the environment that keeps a local Ray
cluster's processes on it. Dependency-free, so that the CLI, the server, Ray, the benchmarks and the tests share it.
"""
from __future__ import annotations

import ipaddress

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: What a local Ray cluster needs to keep every Ray process on 127.0.0.1 and send no usage statistics; read when
#: ray is imported. (Ray's switch is named after Windows and macOS, where the loopback is its default.)
RAY_LOOPBACK_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback (nothing else can reach it)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
