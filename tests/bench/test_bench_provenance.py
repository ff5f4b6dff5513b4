"""bench_provenance measures admission on the admit path (issue 16).

Since policies trust dataset signers and builders by key (3f3a7c5), its Dataset record and
provenance facts without the verifying key's fingerprint were denied, so the benchmark
stopped at its own check instead of timing a compliant model's evaluation.
"""

from __future__ import annotations

import pytest

from bench import bench_provenance


def test_the_admission_benchmark_times_an_admitted_workload(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench_provenance.admission_costs(1000)

    out = capsys.readouterr().out
    assert "admission evaluation, with provenance:" in out
    assert "provenance adds" in out
