"""Image verification: cold verification against ``cosign verify``, and warm cached lookups.

Starts the real registry (go-containerregistry, built by e2e/tools/build-tools.sh) on a
free loopback port, pushes one small image, signs it with the real cosign (key-based,
no transparency log), then measures in the same run:

1. cold verification: a fresh ``ImageVerifier`` (empty cache, new HTTP session) verifying
   the image by digest, against ``cosign verify --key ... --insecure-ignore-tlog`` on the
   same image and key (both check the same .sig signature; cosign also spawns a process,
   which is what an admission controller shelling out to it would pay). Ratio: ours /
   cosign, goal <= 1.0. Also: cold cache but a warm connection (a long-lived verifier
   meeting a new requirement), which is what the webhook pays for a new image.
2. warm lookups: ``ImageVerifier.cached()``, the webhook's hot path, p50/p99 over many
   calls (goal p99 <= 50 us), and ``await verify()`` answered from the cache.

    .venv/bin/python bench/bench_image_verify.py [--rounds 15] [--lookups 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import sys
import tempfile
import time

REPOSITORY_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPOSITORY_ROOT / "operator"), str(REPOSITORY_ROOT)]

from modelshield.api.v1alpha1 import policies  # noqa: E402
from modelshield.engine import compiling, facts  # noqa: E402
from modelshield.supplychain.images import imageverifier, registries  # noqa: E402
from tests.support import localtools  # noqa: E402


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


async def _cold_once(
    registry: localtools.LocalRegistry, image: str, wanted: policies.ImageRequirements, key: str
) -> float:
    verifier = imageverifier.ImageVerifier(registry_options=registry.options())
    started = time.perf_counter()
    found = await verifier.verify(image, wanted, key, deadline_seconds=10)
    elapsed = time.perf_counter() - started
    await verifier.close()
    assert found.signature.outcome is facts.Outcome.VERIFIED, found.signature
    return elapsed


async def _warm_connection(
    registry: localtools.LocalRegistry, image: str, wanted: policies.ImageRequirements, rounds: int
) -> list[float]:
    verifier = imageverifier.ImageVerifier(registry_options=registry.options())
    await verifier.verify(image, wanted, "warm-up", deadline_seconds=10)
    samples = []
    for index in range(rounds):
        started = time.perf_counter()
        found = await verifier.verify(
            image, wanted, f"new-requirement-{index}", deadline_seconds=10
        )
        samples.append(time.perf_counter() - started)
        assert found.signature.outcome is facts.Outcome.VERIFIED
    await verifier.close()
    return samples


async def _lookups(
    registry: localtools.LocalRegistry,
    image: str,
    wanted: policies.ImageRequirements,
    key: str,
    count: int,
) -> tuple[list[float], list[float]]:
    verifier = imageverifier.ImageVerifier(registry_options=registry.options())
    await verifier.verify(image, wanted, key, deadline_seconds=10)
    clock = time.perf_counter_ns
    cached = []
    for _ in range(count):
        started = clock()
        found = verifier.cached(image, key)
        cached.append((clock() - started) / 1e9)
        assert found is not None
    awaited = []
    for _ in range(count // 10):
        started = clock()
        await verifier.verify(image, wanted, key, deadline_seconds=10)
        awaited.append((clock() - started) / 1e9)
    await verifier.close()
    return cached, awaited


async def _push(registry: localtools.LocalRegistry) -> str:
    async with registries.RegistryClient(registry.options()) as client:
        digest = await localtools.push_image(client, registry.host, "bench/server", "v1", "bench")
    return f"{registry.host}/bench/server@{digest}"


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="cold verifications of each kind")
    parser.add_argument("--lookups", type=int, default=200_000, help="cached lookups timed")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = pathlib.Path(scratch)
        registry = localtools.LocalRegistry(
            localtools.require_tool("MODELSHIELD_REGISTRY"), work
        ).start()
        try:
            cosign = localtools.Cosign(
                localtools.require_tool("MODELSHIELD_COSIGN"), work / "cosign"
            )
            private_key, public_pem = cosign.generate_key_pair("bench")
            public_path = private_key.with_suffix(".pub")
            image = asyncio.run(_push(registry))
            cosign.sign(image, private_key)
            wanted = policies.ImageRequirements.model_validate(
                {"signers": [{"name": "bench", "publicKey": public_pem}]}
            )
            key = compiling.requirement_key(wanted)

            ours, theirs = [], []
            for _ in range(arguments.rounds):  # interleaved, so drift hits both alike
                ours.append(asyncio.run(_cold_once(registry, image, wanted, key)))
                started = time.perf_counter()
                completed = cosign.verify(image, public_path)
                theirs.append(time.perf_counter() - started)
                assert completed.returncode == 0, completed.stderr
            warm = asyncio.run(_warm_connection(registry, image, wanted, arguments.rounds))
            cached, awaited = asyncio.run(_lookups(registry, image, wanted, key, arguments.lookups))
        finally:
            registry.stop()

    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"image verification benchmark: {arguments.rounds} rounds, one signed image on loopback")
    print("cold verification (median / p90):")
    print(f"  ImageVerifier, new session     {_ms(ours_median)}  {_ms(_percentile(ours, 0.9))}")
    print(f"  cosign verify --key (process)  {_ms(theirs_median)}  {_ms(_percentile(theirs, 0.9))}")
    print(f"  ratio ours / cosign            {ours_median / theirs_median:8.3f}   (goal <= 1.0)")
    print(
        f"  ImageVerifier, warm connection {_ms(statistics.median(warm))}  {_ms(_percentile(warm, 0.9))}"
    )
    print(f"warm cached lookups ({len(cached)} calls):")
    print(
        f"  cached()  p50 {_percentile(cached, 0.5) * 1e6:6.2f} us   p99 {_percentile(cached, 0.99) * 1e6:6.2f} us"
        f"   max {max(cached) * 1e6:8.2f} us   (goal p99 <= 50 us)"
    )
    print(
        f"  verify() from cache  p50 {_percentile(awaited, 0.5) * 1e6:6.2f} us   "
        f"p99 {_percentile(awaited, 0.99) * 1e6:6.2f} us"
    )


if __name__ == "__main__":
    main()
