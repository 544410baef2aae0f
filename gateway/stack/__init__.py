"""`telemetry-gateway stack up|status|stop|restart|logs`: the local monitoring stack without Docker.

Starts node_exporter, the gateway, the demo service, Alertmanager and Prometheus (the Debian
packages' binaries, this repository's configs) as background processes, like the original's
`scripts/start-monitoring.sh` (`--logs`, `--status`, `--stop`, `--restart`). Everything lives in
one directory of its own (`.stack/` in the checkout, gitignored):

    .stack/stack.json            settings and the processes `up` started (pid + start time)
    .stack/run/<component>.pid   one pid file per component
    .stack/logs/<component>.log  stdout and stderr of each component
    .stack/prometheus/           generated prometheus.yml and the TSDB (35d / 10GB retention)
    .stack/alertmanager/         generated alertmanager.yml, silences and notification log
    .stack/notifications/        notifications.jsonl: every notification Alertmanager sent

Modules: `components` (what runs, with which flags and configs), `processes` (start, health,
stop of one process), `runner` (the commands over the state file), `cli` (the argparse part),
`notifications` (Alertmanager's config for the local receiver), `receiver` (that receiver, run
as its own process).
"""

from gateway.stack.cli import add_stack_parser, main
from gateway.stack.components import Component, StackError, StackSettings
from gateway.stack.runner import Stack

__all__ = ["Component", "Stack", "StackError", "StackSettings", "add_stack_parser", "main"]
