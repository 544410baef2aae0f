"""Metric and label names against the reference itself: prometheus/otlptranslator v1.0.0, the
library the Collector's prometheus exporter (contrib v0.165.1) names with, configured as the
exporter configures it (suffixes on, no UTF-8, label runs of `_` kept). A small Go program
names thousands of random and hand-picked names; the gateway must give the same, except where
the Collector refuses a label name and drops the metric (there the gateway keeps the metric;
see gateway/naming.py)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.naming import metric_name, sanitize_label_name

TRANSLATOR = "github.com/prometheus/otlptranslator v1.0.0"
# otlptranslator.MetricType
MONOTONIC, NON_MONOTONIC, GAUGE, HISTOGRAM = 2, 1, 3, 4

PROGRAM = """
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/otlptranslator"
)

type in struct {
	Name  string `json:"name"`
	Unit  string `json:"unit"`
	Type  int    `json:"type"`
	Label string `json:"label"`
}

func main() {
	mn := otlptranslator.MetricNamer{WithMetricSuffixes: true}
	ln := otlptranslator.LabelNamer{PreserveMultipleUnderscores: true}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	out := [][2]string{}
	for sc.Scan() {
		var x in
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			panic(err)
		}
		kind := otlptranslator.MetricType(x.Type)
		m := otlptranslator.Metric{Name: x.Name, Unit: x.Unit, Type: kind}
		name, err := mn.Build(m)
		if err != nil {
			name = ""
		}
		label, err := ln.Build(x.Label)
		if err != nil {
			label = "!refused"
		}
		out = append(out, [2]string{name, label})
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
"""

WORDS = ["http", "server", "total", "ratio", "bytes", "seconds", "per", "second", "io", "2xx"]
SEPARATORS = [".", "_", "__", "-", " ", "..", ":", "/", "é", "温度"]
UNITS = ["", "1", "s", "ms", "By", "KiBy", "TiBy", "kBy", "%", "Cel", "By/s", "1/s", "{req}",
         "{req}/s", "By/{thing}", "{a}/{b}", "s/", "/", "/s", "By/%", "m/s", "foo bar", "x_",
         "_y", "By/ s ", " s", "per", "seconds"]  # fmt: skip
EDGE_NAMES = ["bytes.per.thing", "bytes_total.by", "ratio.gauge", "total", "_", "...", "9lives",
              "a..b--c", "lat_seconds_total", "xseconds", "colon:name", "ünïcode.name", "温度",
              "__x__", "total_requests", "seconds.total"]  # fmt: skip
EDGE_LABELS = ["a..b", "__x", "_x", "9lives", "ключ", "ключ_x", "a-b c", "key______", "x__",
               "http.route", "é", "_", "A", "otel_scope_x.y"]  # fmt: skip


def _cases(n: int) -> list[dict[str, object]]:
    rng = random.Random(20261130)
    cases: list[dict[str, object]] = []
    for name in EDGE_NAMES:
        for unit in UNITS:
            for kind in (MONOTONIC, NON_MONOTONIC, GAUGE, HISTOGRAM):
                cases.append({"name": name, "unit": unit, "type": kind, "label": "x"})
    for label in EDGE_LABELS:
        cases.append({"name": "m", "unit": "", "type": GAUGE, "label": label})
    while len(cases) < n:
        parts = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
        name = "".join(p + rng.choice(SEPARATORS) for p in parts).rstrip(".")
        label = "".join(rng.choice(WORDS + SEPARATORS) for _ in range(rng.randint(1, 3)))
        cases.append(
            {
                "name": name,
                "unit": rng.choice(UNITS),
                "type": rng.choice((MONOTONIC, NON_MONOTONIC, GAUGE, HISTOGRAM)),
                "label": label,
            }
        )
    return cases


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("go") is None, reason="the Go toolchain is not installed")
def test_names_equal_the_collectors_translator(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text(PROGRAM)
    (tmp_path / "go.mod").write_text(f"module namer\n\ngo 1.25\n\nrequire {TRANSLATOR}\n")
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    subprocess.run(["go", "mod", "tidy"], cwd=tmp_path, env=env, check=True, timeout=300)
    cases = _cases(4000)
    out = subprocess.run(
        ["go", "run", "."],
        input="\n".join(json.dumps(c) for c in cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    reference = json.loads(out.stdout)
    wrong = []
    for case, (name, label) in zip(cases, reference, strict=True):
        kind = case["type"]
        ours = metric_name(
            str(case["name"]),
            str(case["unit"]),
            monotonic_counter=kind == MONOTONIC,
            gauge=kind == GAUGE,
        )
        # A counter named just `total` (no word of its own) is refused by the store: it has no
        # OpenMetrics family name. The Collector writes it.
        if ours != name and name != "total":
            wrong.append(("name", case, ours, name))
        # The Collector refuses a reserved (`__`) or underscore-only label and drops the
        # metric; the gateway keeps it under a `key`-prefixed name.
        if label != "!refused" and not label.startswith("__"):
            ours_label = sanitize_label_name(str(case["label"]))
            if ours_label != label:
                wrong.append(("label", case, ours_label, label))
        elif case["label"] != "":
            assert sanitize_label_name(str(case["label"])).startswith("key")
    assert wrong[:20] == []
