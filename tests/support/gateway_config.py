"""Gateway config fragments the integration tests start from (YAML text, to prepend to a test's
own keys)."""

from __future__ import annotations

__all__ = ["NO_OBSERVERS", "QUIET"]

# No system observers: the gateway's own series then come only from what the test pushes.
NO_OBSERVERS = "observers: {enabled: false}\n"

# Nothing but what the test sends: no observers, no health self-metrics, no memory limiter
# (whose soft limit a loaded machine can reach and then refuse a test's request).
QUIET = (
    "observers:\n  enabled: false\n"
    "health:\n  upstream: {enabled: false}\n  pipeline: {enabled: false}\n"
    "  system: {enabled: false}\n"
    "memory_limiter: {soft_limit_bytes: 0}\n"
)
