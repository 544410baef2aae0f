import pydantic
import pytest

from demo.settings import DemoSettings


def test_from_env_reads_the_documented_variables() -> None:
    s = DemoSettings.from_env(
        {
            "DATABASE_URL": "postgresql://x@127.0.0.1/db",
            "DEMO_TABLE_PREFIX": "abc_",
            "DEMO_FAILURE_RATE": "0.5",
            "UNRELATED": "1",
        }
    )
    assert (s.database_url, s.table_prefix, s.failure_rate) == (
        "postgresql://x@127.0.0.1/db",
        "abc_",
        0.5,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"table_prefix": "x; DROP TABLE users"},
        {"table_prefix": "Upper"},
        {"failure_rate": 1.5},
        {"build_seconds": (2.0, 1.0)},
        {"surprise": 1},
    ],
)
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        DemoSettings.model_validate(bad)
