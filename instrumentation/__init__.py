"""Instrument a FastAPI + asyncpg service for the telemetry gateway with one call.

    from instrumentation import instrument_app

    app = FastAPI()
    instrument_app(app, service_name="billing")   # OTLP to OTEL_EXPORTER_OTLP_ENDPOINT

    @app.post("/deploy")
    async def deploy(request: Request):
        request.app.state.instrumentation.meters.deployment(
            status="success", type="python", duration_s=3.2)

Outside an ASGI app: `handle = setup(service_name=...)`, then `handle.meters`, `handle.shutdown()`.
"""

from instrumentation._app import instrument_app
from instrumentation._meters import Meters
from instrumentation._setup import Instrumentation, setup

__all__ = ["Instrumentation", "Meters", "instrument_app", "setup"]
