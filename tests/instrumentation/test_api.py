import instrumentation


def test_public_surface_is_pinned() -> None:
    assert sorted(instrumentation.__all__) == [
        "Instrumentation",
        "InstrumentationSettings",
        "instrument_app",
        "setup",
    ]
    for name in instrumentation.__all__:
        assert getattr(instrumentation, name) is not None
