"""Traffic for the demo service: every layer, including failures, at a bounded rate, to
127.0.0.1 only.

    stats = await TrafficGenerator("http://127.0.0.1:3000", rate=5).run(duration_s=60)

Each tick starts one action chosen by weight: profile views (some for missing users: 404),
deployment listings, deployments (random outcome, some forced to fail, some invalid: 422),
simulated server errors (500), WebSocket sessions with a valid token (1-3 messages) and with a
bad one (rejected). `stats` counts what was done, so a test can compare it with the gateway.

The weights come from a profile (`PROFILES`), switchable while running (`use_profile`):
`mixed` (the default) does everything; `steady` is a healthy service that fires no alert (no
5xx, no forced build failures); the others are the demo's scenarios (`demo.scenarios`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from demo.db import token_for

__all__ = ["MAX_RATE", "PROFILES", "TrafficGenerator", "TrafficStats"]

MAX_RATE = 200.0  # actions per second; a demo, not a load test
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: a slow build, seconds: past the latency SLO's 500 ms
SLOW_BUILD_SECONDS = (0.8, 1.5)

_MIXED = {
    "view_user": 30,
    "view_missing_user": 5,
    "list_deployments": 10,
    "deploy": 20,
    "deploy_failing": 5,
    "deploy_invalid": 3,
    "simulate_error": 3,
    "websocket_session": 8,
    "websocket_rejected": 2,
    "deploy_slow": 0,
}
#: action name -> weight, by profile
PROFILES: dict[str, dict[str, int]] = {
    "mixed": _MIXED,
    # Healthy: 4xx from clients only, builds fail at the service's own failure_rate (4 %).
    "steady": {**_MIXED, "deploy_failing": 0, "simulate_error": 0},
    # About a third of requests answered 500: ApiErrorRateCritical, the availability SLO page.
    "error-spike": {**_MIXED, "deploy_failing": 0, "simulate_error": 40},
    # Every deployment takes 0.8-1.5 s: the latency SLO page.
    "slow-deploys": {
        **_MIXED,
        "deploy_failing": 0,
        "simulate_error": 0,
        "deploy": 0,
        "deploy_slow": 40,
    },
}


@dataclass
class TrafficStats:
    #: HTTP responses by status code
    responses: Counter[int] = field(default_factory=Counter)
    #: deployments answered, by reported status (success, failed)
    deployments: Counter[str] = field(default_factory=Counter)
    ws_sessions: int = 0
    ws_rejected: int = 0
    #: actions that failed in transport (connection refused, timeout)
    transport_errors: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def requests(self) -> int:
        return sum(self.responses.values())


class TrafficGenerator:
    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 5.0,
        users: int = 30,
        seed: int | None = None,
        concurrency: int = 16,
        profile: str = "mixed",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname not in _LOCAL_HOSTS:
            raise ValueError(f"traffic goes to a local http:// URL only, got {base_url!r}")
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE}] actions/s, got {rate}")
        if users < 1 or concurrency < 1:
            raise ValueError("users and concurrency must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.ws_url = "ws" + self.base_url[4:] + "/ws"
        self.rate = rate
        self.users = users
        self.concurrency = concurrency
        self.rng = random.Random(seed)
        self.stats = TrafficStats()
        self._actions: list[Callable[[httpx.AsyncClient], Awaitable[None]]] = []
        self._weights: list[int] = []
        self.profile = ""
        self.use_profile(profile)

    def use_profile(self, name: str) -> None:
        """Switch the action weights to profile `name` (from the next tick)."""
        if name not in PROFILES:
            raise ValueError(f"unknown traffic profile {name!r}: one of {', '.join(PROFILES)}")
        weights = PROFILES[name]
        self._actions = [getattr(self, action) for action in weights]
        self._weights = list(weights.values())
        self.profile = name

    # --- actions ---

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: object
    ) -> httpx.Response:
        response = await client.request(method, self.base_url + path, **kwargs)  # type: ignore[arg-type]
        self.stats.responses[response.status_code] += 1
        return response

    async def view_user(self, client: httpx.AsyncClient) -> None:
        await self._request(client, "GET", f"/api/users/{self.rng.randint(1, self.users)}")

    async def view_missing_user(self, client: httpx.AsyncClient) -> None:
        await self._request(client, "GET", f"/api/users/{self.users + 1000}")

    async def list_deployments(self, client: httpx.AsyncClient) -> None:
        await self._request(client, "GET", "/api/deployments?limit=10")

    async def deploy(
        self,
        client: httpx.AsyncClient,
        outcome: str | None = None,
        build_seconds: float | None = None,
    ) -> None:
        body: dict[str, object] = {
            "user_id": self.rng.randint(1, self.users),
            "runtime": self.rng.choice(["python", "node", "go"]),
        }
        if outcome is not None:
            body["outcome"] = outcome
        if build_seconds is not None:
            body["build_seconds"] = build_seconds
        response = await self._request(client, "POST", "/api/deploy", json=body)
        if response.status_code == 201:
            self.stats.deployments[response.json()["status"]] += 1

    async def deploy_failing(self, client: httpx.AsyncClient) -> None:
        await self.deploy(client, outcome="failed")

    async def deploy_slow(self, client: httpx.AsyncClient) -> None:
        await self.deploy(client, build_seconds=self.rng.uniform(*SLOW_BUILD_SECONDS))

    async def deploy_invalid(self, client: httpx.AsyncClient) -> None:
        await self._request(client, "POST", "/api/deploy", json={"user_id": "nobody"})

    async def simulate_error(self, client: httpx.AsyncClient) -> None:
        await self._request(client, "GET", "/api/simulate-error")

    async def websocket_session(self, client: httpx.AsyncClient) -> None:
        user = self.rng.randint(1, self.users)
        async with connect(f"{self.ws_url}?token={token_for(user)}", open_timeout=5) as ws:
            for i in range(self.rng.randint(1, 3)):
                await ws.send(f"hello {i}")
                await asyncio.wait_for(ws.recv(), 5)
        self.stats.ws_sessions += 1

    async def websocket_rejected(self, client: httpx.AsyncClient) -> None:
        try:
            async with connect(f"{self.ws_url}?token=wrong", open_timeout=5):
                pass
        except InvalidStatus:
            self.stats.ws_rejected += 1

    # --- driving ---

    def pick(self) -> Callable[[httpx.AsyncClient], Awaitable[None]]:
        return self.rng.choices(self._actions, self._weights)[0]

    async def _guarded(
        self,
        action: Callable[[httpx.AsyncClient], Awaitable[None]],
        client: httpx.AsyncClient,
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await action(client)
        except (httpx.HTTPError, WebSocketException, OSError, TimeoutError):
            self.stats.transport_errors += 1
        finally:
            slots.release()

    async def run(
        self, *, duration_s: float | None = None, stop: asyncio.Event | None = None
    ) -> TrafficStats:
        """Until `duration_s` passes or `stop` is set; waits for actions in flight."""
        stop = stop or asyncio.Event()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate
        next_tick = time.monotonic()
        async with httpx.AsyncClient(timeout=10.0) as client:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                # Bounded: when every slot is busy the tick waits instead of piling up.
                await slots.acquire()
                task = asyncio.create_task(self._guarded(self.pick(), client, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                next_tick += interval
                delay = next_tick - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                else:
                    next_tick = time.monotonic()  # fell behind: do not burst to catch up
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return self.stats
