"""TokenAuth: tenants from tokens, one answer for every kind of wrong credential. (Reading the
token files is the config layer's: tests/gateway/test_config_files.py.)"""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, load
from gateway.receivers.auth import AuthError, TokenAuth
from gateway.receivers.status import grpc_code, http_status


def auth(**tokens: str) -> TokenAuth:
    return TokenAuth({t: [v] for t, v in tokens.items()})


def test_valid_token_names_its_tenant() -> None:
    a = auth(team_a="alpha-token", team_b="beta-token")
    assert a.tenant("Bearer alpha-token") == "team_a"
    assert a.tenant("bearer beta-token") == "team_b", "the scheme is case-insensitive"
    assert a.tenant("Bearer  beta-token ") == "team_b"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxwaGE6",
        "alpha-token",
        "Bearer alpha-toke",
        "Bearer alpha-tokenX",
        "Bearer beta",
        "Bearer \udcff",
    ],
)
def test_every_wrong_credential_gets_the_same_error(header: str | None) -> None:
    a = auth(team_a="alpha-token", team_b="beta-token")
    with pytest.raises(AuthError) as info:
        a.tenant(header)
    assert str(info.value) == "missing or invalid bearer token"
    assert "alpha" not in str(info.value) and "team" not in str(info.value)
    assert http_status(info.value) == 401
    assert grpc_code(info.value).name == "UNAUTHENTICATED"


def test_config_from_the_environment_and_validation() -> None:
    cfg = load(None, environ={"GATEWAY_AUTH__ENABLED": "true", "GATEWAY_AUTH__TOKENS": "{a: s3}"})
    assert cfg.auth.tokens == {"a": "s3"}
    assert "s3" not in repr(cfg.auth), "tokens stay out of logs and reprs"
    with pytest.raises(ConfigError, match=r"auth\.enabled needs"):
        load({"auth": {"enabled": True}})
    with pytest.raises(ConfigError, match="must not be empty"):
        load({"auth": {"tokens": {"a": ""}}})
