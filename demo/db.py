"""The demo's PostgreSQL schema and queries (asyncpg), under a table prefix."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["PLANS", "Database", "User", "seed_user", "token_for"]

PLANS = ("free", "premium", "team")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    plan: str


def token_for(user_id: int) -> str:
    """The seed users' WebSocket tokens are predictable so the traffic generator can log in;
    a real service would issue random ones."""
    return f"demo-token-{user_id}"


def seed_user(user_id: int) -> User:
    """Seed user `user_id` (1-based): 60 % free, 30 % premium, 10 % team."""
    slot = user_id % 10
    plan = "free" if slot < 6 else "premium" if slot < 9 else "team"
    return User(user_id, f"user{user_id}", plan)


class Database:
    def __init__(self, pool: asyncpg.Pool, prefix: str) -> None:
        self.pool = pool
        self.users = f"{prefix}users"
        self.deployments = f"{prefix}deployments"
        self._prefix = prefix

    @classmethod
    async def connect(cls, dsn: str, prefix: str, timeout_s: float) -> Database:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(dsn, min_size=1, max_size=10, timeout=timeout_s), timeout_s
        )
        return cls(pool, prefix)

    async def create_schema(self, seed_users: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Several workers start at once; one creates and seeds, the others wait for it.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._prefix)
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.users} (
                    id integer PRIMARY KEY,
                    name text NOT NULL,
                    plan text NOT NULL CHECK (plan IN ('free', 'premium', 'team')),
                    token text NOT NULL UNIQUE)"""
            )
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.deployments} (
                    id bigserial PRIMARY KEY,
                    user_id integer NOT NULL REFERENCES {self.users}(id),
                    runtime text NOT NULL,
                    status text NOT NULL,
                    duration_s double precision,
                    cost_usd double precision,
                    created_at timestamptz NOT NULL DEFAULT now())"""
            )
            if await conn.fetchval(f"SELECT count(*) FROM {self.users}") == 0:
                users = [seed_user(i) for i in range(1, seed_users + 1)]
                await conn.executemany(
                    f"INSERT INTO {self.users} (id, name, plan, token) VALUES ($1, $2, $3, $4)",
                    [(u.id, u.name, u.plan, token_for(u.id)) for u in users],
                )

    async def drop_schema(self) -> None:
        await self.pool.execute(f"DROP TABLE IF EXISTS {self.deployments}, {self.users}")

    async def user(self, user_id: int) -> User | None:
        row = await self.pool.fetchrow(
            f"SELECT id, name, plan FROM {self.users} WHERE id = $1", user_id
        )
        return User(row["id"], row["name"], row["plan"]) if row else None

    async def user_by_token(self, token: str) -> User | None:
        row = await self.pool.fetchrow(
            f"SELECT id, name, plan FROM {self.users} WHERE token = $1", token
        )
        return User(row["id"], row["name"], row["plan"]) if row else None

    async def start_deployment(self, user_id: int, runtime: str) -> int:
        return int(
            await self.pool.fetchval(
                f"INSERT INTO {self.deployments} (user_id, runtime, status) "
                "VALUES ($1, $2, 'building') RETURNING id",
                user_id,
                runtime,
            )
        )

    async def finish_deployment(
        self, deployment_id: int, status: str, duration_s: float, cost_usd: float
    ) -> None:
        await self.pool.execute(
            f"UPDATE {self.deployments} SET status = $2, duration_s = $3, cost_usd = $4 "
            "WHERE id = $1",
            deployment_id,
            status,
            duration_s,
            cost_usd,
        )

    async def recent_deployments(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT id, user_id, runtime, status, duration_s, cost_usd, created_at "
            f"FROM {self.deployments} ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]

    async def plan_counts(self) -> dict[str, int]:
        rows = await self.pool.fetch(f"SELECT plan, count(*) AS n FROM {self.users} GROUP BY plan")
        counts = dict.fromkeys(PLANS, 0)
        counts.update({r["plan"]: int(r["n"]) for r in rows})
        return counts

    async def close(self) -> None:
        await self.pool.close()
