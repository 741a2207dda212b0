"""`python -m scripts.bench --quick` runs end to end (its own Anvil, deployment, service subprocess, world,
every phase) and prints and writes every figure. No timing is asserted: the quick run is a smoke test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIGURES = (
    "Intake single: orders/s",
    "Intake single: latency p50 / p99",
    "Intake bulk: orders/s",
    "Accept-to-anchored p50 / p99",
    "Proof bundles served/s",
    "Proof fold alone",
    "verify_bundle, five steps",
    "Service memory, VmHWM",
    "Database per million orders",
)


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMEBANK_")}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    printed = done.stdout
    for figure in FIGURES:
        assert figure in printed, f"{figure!r} missing from the output:\n{printed[-3000:]}"
    assert "=== Profile ===" in printed
    assert printed.count("PASS") + printed.count("MISS") >= 4  # a verdict next to each target
    assert "statuses {201: " in printed  # the single phase's orders were accepted
    assert "statuses {200: " in printed  # proof bundles were served: the orders got anchored
    verified = re.search(r"\((\d+)/(\d+) verified\)", printed)
    assert verified and verified.group(1) == verified.group(2) != "0", "verify_bundle did not verify every bundle"
    text = out.read_text()
    for figure in FIGURES:
        assert figure in text
    assert "python -m scripts.bench --quick" in text and "Machine:" in text
