"""Scenarios for `telemetry-gateway demo --scenario NAME`: a fault that fires the repository's
existing alerts, then recovery so that they resolve.

Timeline: `warmup_s` of steady traffic (the demo is quiet: no alert fires), then the fault for
`fault_s`, then steady traffic again until the demo stops. The defaults give the alerts' `for:`
and rate windows time to fire (a few minutes); tests pass short ones.

- `error-spike`: about a third of requests answered 500. Fires ApiErrorRateCritical (Alertmanager
  inhibits its warning twin) and ApiAvailabilityBudgetBurnPage.
- `slow-deploys`: every deployment takes 0.8-1.5 s. Fires ApiLatencyBudgetBurnPage.
- `db-outage`: the service's PostgreSQL connections reset and new ones refused (through a relay,
  `demo.dbproxy`). Fires DatabaseConnectionFailure, and the API error alerts too: requests that
  need the database fail.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCENARIOS", "Scenario"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    #: what the fault does, for the screen
    fault: str
    #: the repository's alerts (prometheus/rules) the fault fires
    alerts: tuple[str, ...]
    #: traffic profile during the fault (demo.traffic.PROFILES)
    profile: str = "steady"
    #: cut the service's database connections during the fault
    database_outage: bool = False
    #: default seconds of steady traffic before the fault, and of the fault
    warmup_s: float = 60.0
    fault_s: float = 300.0


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "error-spike",
            "about a third of API requests answered 500",
            ("ApiErrorRateCritical", "ApiAvailabilityBudgetBurnPage"),
            profile="error-spike",
        ),
        Scenario(
            "slow-deploys",
            "every deployment takes 0.8-1.5 s (latency objective: 500 ms)",
            ("ApiLatencyBudgetBurnPage",),
            profile="slow-deploys",
        ),
        Scenario(
            "db-outage",
            "PostgreSQL connections reset and refused",
            ("DatabaseConnectionFailure",),
            database_outage=True,
        ),
    )
}
