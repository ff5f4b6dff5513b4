"""Training provenance: what verification costs the operator per model, and admission.

1. Operator, per model: ``checking.check`` (fetch a file:// provenance, verify the DSSE
   signature against 2 trusted builder keys, parse and bind the SLSA statement to the
   verified digest), cold (a fresh interpreter: imports included) and warm (in-process,
   median of 200); and one whole ModelArtifact check (fetch, model-signing verification,
   scan) of a model of ``--model-mib`` MiB with and without provenance.
2. Admission: the engine's evaluation of one Deployment whose model must carry verified
   provenance with one signed dataset, against the same policy without the provenance
   block (median and p99 of 20,000 evaluations each, same process).

    python -m bench.bench_provenance [--model-mib 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from modelshield.api.v1alpha1 import artifacts
from modelshield.api.v1alpha1.common import Severity
from modelshield.controllers import artifactchecks
from modelshield.engine import compiling, evaluating, facts
from modelshield.modelartifacts import fetching, modelverifying, signing
from modelshield.provenance import checking, envelopes
from tests.support import signedprovenance as helpers
from tests.support import signingkeys as keys
from tests.support import workloadbuilders as b

_COLD = """
import sys, time
began = time.perf_counter()
# What the worker process already imports for the model check itself.
from modelshield.modelartifacts import fetching, reconciling
started = time.perf_counter()
from modelshield.provenance import checking, envelopes
imported = time.perf_counter()
request = checking.Request(uri=sys.argv[1], builders=(
    envelopes.TrustedKey("other", open(sys.argv[4], "rb").read()),
    envelopes.TrustedKey("pipeline", open(sys.argv[2], "rb").read()),
))
import pathlib
settings = fetching.Settings(file_roots=(pathlib.Path(sys.argv[5]),))
data = checking.fetch(sys.argv[1], pathlib.Path("/nonexistent"), settings, "")
result = checking.judge(data, request, sys.argv[3])
assert result.reason == checking.VERIFIED, result
print(imported - started, time.perf_counter() - imported)
"""


def _model(directory: pathlib.Path, mib: int, release: keys.KeyPair) -> pathlib.Path:
    directory.mkdir(parents=True)
    (directory / "weights.safetensors").write_bytes(os.urandom(mib << 20))
    (directory / "config.json").write_text('{"layers": 2}')
    signing.sign_with_key(directory, release.private_path)
    return directory


def operator_costs(root: pathlib.Path, mib: int) -> None:
    key_dir = root / "keys"
    release, pipeline = keys.key_pair(key_dir, "release"), keys.key_pair(key_dir, "pipeline")
    other = keys.key_pair(key_dir, "other")
    model = _model(root / "model", mib, release)
    started = time.perf_counter()
    path = helpers.attest(model, pipeline, {"s3://data/fraud/tx/": "sha256:" + "d" * 64})
    attest_seconds = time.perf_counter() - started
    digest = helpers.digest_of(model)
    uri = f"file://{path}"
    cold = []
    for _ in range(5):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _COLD,
                uri,
                str(key_dir / "pipeline.pub"),
                digest,
                str(key_dir / "other.pub"),
                str(root),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        imports, check = (float(x) for x in done.stdout.split())
        cold.append((imports, check))
    request = checking.Request(
        uri=uri,
        builders=(
            envelopes.TrustedKey("other", other.public_pem),
            envelopes.TrustedKey("pipeline", pipeline.public_pem),
        ),
    )
    warm = []
    for _ in range(200):
        t0 = time.process_time()  # CPU time: other work on the machine does not count
        data = checking.fetch(uri, root / "scratch", fetching.Settings(file_roots=(root,)), "")
        assert checking.judge(data, request, digest).reason == checking.VERIFIED
        warm.append(time.process_time() - t0)
    print(f"model attest of a {mib} MiB model (hashing included): {attest_seconds * 1000:.0f} ms")
    print(
        f"provenance check per model, cold (fresh interpreter, after the model check's own "
        f"imports): provenance imports median "
        f"{statistics.median(c[0] for c in cold) * 1000:.0f} ms, then the check "
        f"{statistics.median(c[1] for c in cold) * 1000:.0f} ms (of {len(cold)})"
    )
    print(f"provenance check per model, warm: median {statistics.median(warm) * 1e6:.0f} us CPU")
    job = artifactchecks.Job(
        uid="bench",
        spec=artifacts.ModelArtifactSpec(uri=f"file://{model}"),
        generation=1,
        previous=None,
        signers=(modelverifying.KeySigner("release", release.public_pem),),
        threshold=Severity.HIGH,
        settings=artifactchecks.Settings(
            fetch=fetching.Settings(file_roots=(root,)), work_dir=root / "work"
        ),
    )
    for label, each in (
        ("without provenance", job),
        ("with provenance", dataclasses.replace(job, provenance=request)),
    ):
        times = []
        for _ in range(5):
            t0 = time.process_time()
            verdict = artifactchecks.run_job(each)
            times.append(time.process_time() - t0)
            ready = next(c for c in verdict.status.conditions if c.type == "Ready")
            assert ready.status.value == "True", ready
        print(
            f"whole ModelArtifact check, {mib} MiB model, {label}: median {statistics.median(times) * 1000:.0f} ms"
        )


def admission_costs(count: int) -> None:
    data = "s3://data/fraud/tx/"
    digest = "sha256:" + "d" * 64
    provenance = facts.ProvenanceFacts(
        verified=True,
        reason="ProvenanceVerified",
        builder="pipeline",
        # Trusted by key, not name (3f3a7c5): the facts record which key verified.
        builder_key=b.RELEASE_KEY_ID,
        finished=b.NOW - datetime.timedelta(days=3),
        datasets=(("tx", data, digest),),
    )
    model = dataclasses.replace(b.artifact(), provenance=provenance)
    record = facts.ArtifactFacts(
        namespace=b.NAMESPACE,
        name="tx",
        uri=data,
        expected_digest=None,
        current=True,
        verified=True,
        verified_digest=digest,
        signer="data-team",
        signer_key=b.RELEASE_KEY_ID,
        scanned=True,
        last_checked=b.NOW,
        artifact_type="Dataset",
    )
    source = facts.StaticFacts(
        images={b.SIGNED_IMAGE: b.verified_image()},
        artifacts={(b.NAMESPACE, b.MODEL): model, (b.NAMESPACE, "tx"): record},
    )
    block: dict[str, Any] = {
        "trustedBuilders": [{"name": "pipeline", "publicKey": b.RELEASE_KEY}],
        "allowedDatasetSources": ["s3://data/fraud/"],
        "requireSignedDatasets": True,
        "datasetSigners": [{"name": "data-team", "publicKey": b.RELEASE_KEY}],
        "maxAge": "90d",
    }
    body = b.workload("Deployment")
    variants = {}
    for label, models in (
        ("without provenance", {"signers": b.SIGNERS}),
        ("with provenance", {"signers": b.SIGNERS, "provenance": block}),
    ):
        policy_set = compiling.compile_policies(
            [b.policy(images={"signers": b.SIGNERS}, models=models, runtime={})]
        )
        decision = evaluating.evaluate(body, policy_set, {}, source, b.NOW)
        # The admit path, whole: no violation, no warning (a denial stops early and would
        # measure less than admission does for a compliant model).
        assert decision.allowed, decision.violations
        assert not decision.violations, decision.violations
        assert not decision.warnings, decision.warnings
        variants[label] = policy_set
    # CPU time per evaluation, the two variants interleaved in rounds of 1,000 so that
    # both see the same machine; the median round of each.
    rounds: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(max(1, count // 1000)):
        for label, policy_set in variants.items():
            t0 = time.process_time()
            for _ in range(1000):
                evaluating.evaluate(body, policy_set, {}, source, b.NOW)
            rounds[label].append((time.process_time() - t0) / 1000)
    for label, measured in rounds.items():
        print(f"admission evaluation, {label}: {statistics.median(measured) * 1e6:.1f} us CPU")
    added = statistics.median(rounds["with provenance"]) - statistics.median(
        rounds["without provenance"]
    )
    print(f"admission: provenance adds {added * 1e6:.1f} us CPU per evaluation (status facts only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-mib", type=int, default=64)
    parser.add_argument("--evaluations", type=int, default=20_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-provenance-") as directory:
        operator_costs(pathlib.Path(directory), arguments.model_mib)
    admission_costs(arguments.evaluations)


if __name__ == "__main__":
    main()
