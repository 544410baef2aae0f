# One image for the gateway (`telemetry-gateway run`) and the demo service (`python -m demo`).
# Everything is installed at build time; the container needs no network access at run time
# except to the services it talks to.
#
#   docker build -t telemetry-gateway:local .
#   docker run --rm -p 127.0.0.1:4318:4318 -e GATEWAY_HOST=0.0.0.0 telemetry-gateway:local

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY . .
# Wheels of the project and its service-side package (instrumentation/, its own distribution)
# plus wheels of every dependency, so the runtime stage installs offline.
RUN pip wheel --wheel-dir /wheels ./instrumentation .

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels telemetry-gateway \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home gateway \
    && install -d -o 10001 -g 10001 /var/lib/telemetry-gateway
# The disk forward queue's directory; a named volume mounted here starts with this owner.
VOLUME /var/lib/telemetry-gateway
USER 10001
# Bind every interface inside the container; compose publishes the ports on 127.0.0.1 only.
ENV GATEWAY_HOST=0.0.0.0
EXPOSE 4318 4317 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4318/live', timeout=3)"
CMD ["telemetry-gateway", "run"]
