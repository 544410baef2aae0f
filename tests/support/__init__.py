"""What tests share; test modules import helpers from here only (tests/test_test_imports.py).

- waiting: `eventually` (poll until true, fail with a description), `settled` (poll, then
  sample again after the last export)
- fakes: `FakeClock` (callable, `advance`, an async `sleep` that moves it), `ListConsumer` sink
- otlp: `Req`, concise OTLP requests; points: data points read back out of batches
- servers: free ports and real processes (gateway, Prometheus, Alertmanager, demo);
  gateway_config: `QUIET`, `NO_OBSERVERS`; gateway_client: `push`, `scrape`, `self_metric`
- prometheus: instant queries (`query`, `values`, `scalar`, `query_response`); promtext: parsing
- collector: the real Collector; alert_rules: the repo's rules with short `for:`
- unit_guard: the pytest plugin behind `make unit`
"""
