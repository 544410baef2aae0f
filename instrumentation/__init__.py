"""Instrument a FastAPI + asyncpg service for the telemetry gateway with one call.

    from instrumentation import instrument_app

    app = FastAPI()
    instrument_app(app, service_name="billing")   # OTLP to OTEL_EXPORTER_OTLP_ENDPOINT

    @app.post("/deploy")
    async def deploy(request: Request):
        request.app.state.instrumentation.meters.deployment(
            status="success", type="python", duration_s=3.2)

Outside an ASGI app: `handle = setup(service_name=...)`, then `handle.meters`, `handle.shutdown()`.

A service that mounts the health module (`gateway.health`) exports its check results and
circuit breakers with `registry.add_listener(HealthMetrics(handle.meter_provider,
namespace=handle.namespace))`.
"""

from instrumentation._app import instrument_app
from instrumentation._health import HealthMetrics
from instrumentation._meters import Meters
from instrumentation._setup import Instrumentation, setup

__all__ = ["HealthMetrics", "Instrumentation", "Meters", "instrument_app", "setup"]
