#!/usr/bin/env bash
# Installs the Debian packages the tests need, when they are missing.
set -euo pipefail
need=()
for pair in prometheus:prometheus promtool:prometheus \
            prometheus-alertmanager:prometheus-alertmanager amtool:prometheus-alertmanager \
            prometheus-node-exporter:prometheus-node-exporter \
            prometheus-pushgateway:prometheus-pushgateway docker-compose:docker-compose \
            prometheus-blackbox-exporter:prometheus-blackbox-exporter \
            prometheus-postgres-exporter:prometheus-postgres-exporter \
            prometheus-redis-exporter:prometheus-redis-exporter \
            chromium:chromium; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi
