"""The default views, written as the YAML a user would put under `views:`, validated once.

Kept in this module rather than a data file so that the package needs no package-data setup.
"""

from __future__ import annotations

import functools

import yaml
from pydantic import TypeAdapter

from gateway.processors.views import ViewConfig

__all__ = ["DEFAULT_VIEWS_YAML", "default_views"]

DEFAULT_VIEWS_YAML = """\
# The gateway's default views: what the instrumentation package emits -> the metric catalogue.
# `views:` in the gateway's YAML replaces this list; `views: []` turns views off.
# Attribute names are the OpenTelemetry semantic conventions the instrumentation uses
# (instrumentation/_http.py, instrumentation/_asyncpg.py).

# Application: HTTP server requests, counted, from the duration histogram's count.
- name: api-requests
  select: {instrument: http.server.request.duration, kind: histogram}
  to: api.requests
  derive: {value: count}
  attributes:
    keep: [http.request.method, http.route, http.response.status_code]
    rename: {http.request.method: method, http.route: endpoint, http.response.status_code: status}
    values:
      # A request no route matched (a 404 for an unknown path) has no http.route: one value
      # for all of them keeps the label bounded.
      http.route: {default: unknown}
      http.response.status_code: {function: status_class, default: unknown}

# Application: HTTP server request duration by method and route template.
- name: api-duration
  select: {instrument: http.server.request.duration, kind: histogram}
  to: api.duration
  attributes:
    keep: [http.request.method, http.route]
    rename: {http.request.method: method, http.route: endpoint}
    values:
      http.route: {default: unknown}

# Application: requests in flight, by method (url.scheme summed away).
- name: api-active-requests
  select: {instrument: http.server.active_requests, kind: sum}
  to: api.active_requests
  attributes:
    keep: [http.request.method]
    rename: {http.request.method: method}

# Application: database operation duration, by SQL verb and outcome (success or error).
- name: db-operation-duration
  select: {instrument: db.client.operation.duration, kind: histogram}
  to: db.operation.duration
  attributes:
    keep: [db.operation.name, error.type]
    rename: {db.operation.name: operation, error.type: outcome}
    values:
      db.operation.name: {default: OTHER}
      error.type: {default: success, other: error}

# Application and business metrics the instrumentation already names from the catalogue: kept
# as they are, without the instrumentation scope (no otel_scope_* labels on dashboards).
- name: catalogue-scope
  select: {instrument: "{namespace}.*"}

# The same metrics from a service that names them under the default namespace (the demo's
# `coderunner.deployments`), moved into the gateway's (`acme.deployments`), so a service needs
# no knowledge of the gateway's namespace; only catalogue names move. Nothing to do when the
# gateway uses the default namespace.
- name: catalogue-default-namespace
  select: {instrument: "coderunner.*"}
  from_namespace: coderunner
"""


@functools.cache
def default_views() -> tuple[ViewConfig, ...]:
    """The views that turn the instrumentation package's output into the whole catalogue."""
    return TypeAdapter(tuple[ViewConfig, ...]).validate_python(yaml.safe_load(DEFAULT_VIEWS_YAML))
