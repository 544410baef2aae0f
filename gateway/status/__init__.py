"""The status page: JSON endpoints under `/api/status/` and the page under `/ui/` that draws
them (pipeline, cardinality explorer, live tail, health and breakers, host history).

Everything is read from the running components through small read methods; nothing here is
on the ingest path, and every answer is bounded in size and work.
"""

from gateway.status.api import StatusParts, status_router

__all__ = ["StatusParts", "status_router"]
