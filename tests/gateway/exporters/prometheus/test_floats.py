"""`le`/`quantile` label values against the reference itself: Go's strconv.FormatFloat, which
client_golang's expfmt (and so the Collector's prometheus exporter) uses. A small Go program
formats the same random floats; the Go toolchain is on every machine that builds the
Collector."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from gateway.exporters.prometheus.floats import label_float

GO_PROGRAM = """
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// writeOpenMetricsFloat's rule in prometheus/common/expfmt: ".0" when neither "." nor "e".
func om(f float64) string {
	switch {
	case f == 1:
		return "1.0"
	case f == 0:
		return "0.0"
	case f == -1:
		return "-1.0"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, "e.") {
		s += ".0"
	}
	return s
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := [][2]string{}
	for in.Scan() {
		bits, _ := strconv.ParseUint(in.Text(), 16, 64)
		f := math.Float64frombits(bits)
		text := strconv.FormatFloat(f, 'g', -1, 64)
		if f == 0 {
			text = "0"
		}
		out = append(out, [2]string{text, om(f)})
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
"""


def _floats(n: int) -> list[float]:
    rng = random.Random(20261130)
    values = [0.0, -0.0, 1.0, -1.0, 5.0, 0.5, 0.005, 1e-4, 1e-5, 1e5, 1e6, 123456.0, 1234567.0]
    values += [1e21, 1e-300, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 2.0**-20, 2.0**60]
    values += [10.0**e for e in range(-30, 30)]
    while len(values) < n:
        kind = rng.random()
        if kind < 0.3:  # bucket-like round numbers
            values.append(round(rng.uniform(0, 100), rng.randint(0, 4)) * 10 ** rng.randint(-6, 8))
        elif kind < 0.6:  # exponential-histogram bounds
            values.append(2.0 ** (rng.randint(-200, 200) * 2.0 ** -rng.randint(0, 8)))
        else:  # any finite double
            bits = rng.getrandbits(64)
            f = struct.unpack("<d", struct.pack("<Q", bits))[0]
            if math.isfinite(f):
                values.append(f)
    return values


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("go") is None, reason="the Go toolchain is not installed")
def test_label_floats_equal_go_formatting(tmp_path: Path) -> None:
    program = tmp_path / "main.go"
    program.write_text(GO_PROGRAM)
    values = _floats(3000)
    stdin = "\n".join(f"{struct.unpack('<Q', struct.pack('<d', v))[0]:x}" for v in values)
    out = subprocess.run(
        ["go", "run", str(program)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "GOFLAGS"},
        cwd=tmp_path,
    )
    expected = json.loads(out.stdout)
    mismatches = [
        (v, label_float(v), label_float(v, openmetrics=True), text, om)
        for v, (text, om) in zip(values, expected, strict=True)
        if (label_float(v), label_float(v, openmetrics=True)) != (text, om)
    ]
    assert mismatches == []


def test_specials() -> None:
    assert label_float(math.inf) == "+Inf"
    assert label_float(-math.inf, openmetrics=True) == "-Inf"
    assert label_float(math.nan) == "NaN"
