"""Real tools for the supply-chain tests: an OCI registry process, the cosign binary, image pushes.

The registry is go-containerregistry's ``registry`` and cosign is the real ``cosign``,
both built by e2e/tools/build-tools.sh. cosign runs offline: keys it generates, no
transparency-log upload, plain HTTP to the loopback registry.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from e2e.toolcache import BUILD_SCRIPT, tool_path
from modelshield.supplychain.images import bundles, pushing, registries

COSIGN_TIMEOUT_SECONDS = 60


def require_tool(variable: str) -> pathlib.Path:
    """The cached tool's path; fails (never skips) when it was not built."""
    path = tool_path(variable)
    if path is None:
        raise AssertionError(
            f"{variable} is not built: run {BUILD_SCRIPT} first (CI always builds the test tools)"
        )
    return path


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalRegistry:
    """A go-containerregistry registry on a free loopback port, in memory, over plain HTTP."""

    def __init__(self, binary: pathlib.Path, log_dir: pathlib.Path) -> None:
        self.binary = binary
        self.log_path = log_dir / f"registry-{time.monotonic_ns()}.log"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRegistry:
        """Start the registry and wait until it answers /v2/."""
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(self.binary), "-port", str(self.port)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"registry exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except urllib.error.HTTPError as error:  # not serving yet; it holds the socket
                error.close()
                time.sleep(0.05)
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise AssertionError(f"registry on {self.host} did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        """Stop the registry (its content is lost: it keeps everything in memory)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None

    def options(self, **overrides: Any) -> registries.RegistryOptions:
        """Client options that reach this registry over HTTP."""
        return registries.RegistryOptions(insecure_hosts=frozenset({self.host}), **overrides)


async def push_image(
    client: registries.RegistryClient, host: str, repository: str, tag: str, content: str
) -> str:
    """Push a small two-layer image; returns its manifest digest."""
    layers = []
    for index, text in enumerate((content, f"{content} layer two")):
        blob = f"{index}:{text}".encode()
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": await pushing.put_blob(client, host, repository, blob),
                "size": len(blob),
            }
        )
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": registries.OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": await pushing.put_blob(client, host, repository, config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    return await pushing.put_manifest(
        client, host, repository, tag, manifest, registries.OCI_MANIFEST
    )


class Cosign:
    """The real cosign binary, offline, with its own HOME."""

    def __init__(self, binary: pathlib.Path, home: pathlib.Path) -> None:
        self.binary = binary
        self.home = home
        home.mkdir(parents=True, exist_ok=True)

    def run(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run cosign with an empty key password and no access to public sigstore services."""
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "COSIGN_PASSWORD": "",
            "COSIGN_YES": "true",
            "TUF_ROOT": str(self.home / "tuf"),
        }
        completed = subprocess.run(
            [str(self.binary), *arguments],
            cwd=self.home,
            env=environment,
            capture_output=True,
            text=True,
            timeout=COSIGN_TIMEOUT_SECONDS,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"cosign {' '.join(arguments)} failed ({completed.returncode}):\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return completed

    def generate_key_pair(self, name: str) -> tuple[pathlib.Path, str]:
        """A new ECDSA P-256 key pair in cosign's format; returns (private key path, public PEM)."""
        directory = self.home / "keys" / name
        directory.mkdir(parents=True, exist_ok=True)
        self.run("generate-key-pair", "--output-key-prefix", str(directory / "cosign"))
        return directory / "cosign.key", (directory / "cosign.pub").read_text()

    def import_key_pair(self, name: str, private_pem: pathlib.Path) -> tuple[pathlib.Path, str]:
        """A cosign key made from a PEM private key (RSA, ECDSA P-384, Ed25519...)."""
        directory = self.home / "keys" / name
        directory.mkdir(parents=True, exist_ok=True)
        self.run(
            "import-key-pair",
            "--key",
            str(private_pem),
            "--output-key-prefix",
            str(directory / "cosign"),
        )
        return directory / "cosign.key", (directory / "cosign.pub").read_text()

    def _offline(self) -> list[str]:
        return ["--tlog-upload=false", "--allow-http-registry", "--allow-insecure-registry"]

    def sign(self, image: str, key: pathlib.Path, *, bundle_format: bool = False) -> None:
        """``cosign sign --key``: the .sig tag, or a sigstore bundle referrer."""
        extra = ["--new-bundle-format"] if bundle_format else []
        self.run("sign", "--key", str(key), *self._offline(), *extra, image)

    def attest(
        self,
        image: str,
        key: pathlib.Path,
        predicate: dict[str, Any],
        *,
        predicate_type: str = "vuln",
        bundle_format: bool = False,
    ) -> None:
        """``cosign attest --key --type``: the .att tag, or a sigstore bundle referrer."""
        path = self.home / f"predicate-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(predicate))
        extra = ["--new-bundle-format"] if bundle_format else []
        self.run(
            "attest",
            "--key",
            str(key),
            "--type",
            predicate_type,
            "--predicate",
            str(path),
            *self._offline(),
            *extra,
            image,
        )

    def verify(self, image: str, public_key: pathlib.Path) -> subprocess.CompletedProcess[str]:
        """``cosign verify --key`` without the transparency log, as the benchmark's baseline."""
        return self.run(
            "verify",
            "--key",
            str(public_key),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            "--allow-insecure-registry",
            image,
            check=False,
        )


def vuln_predicate(severities: list[str], finished: str) -> dict[str, Any]:
    """A cosign ``vuln`` predicate holding a Trivy report with one finding per severity given."""
    return {
        "invocation": {"parameters": None, "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy@v0.58.0",
            "version": "0.58.0",
            "db": {"uri": "", "version": ""},
            "result": {
                "SchemaVersion": 2,
                "ArtifactName": "model-server",
                "Results": [
                    {
                        "Target": "model-server",
                        "Vulnerabilities": [
                            {"VulnerabilityID": f"CVE-2026-{1000 + i}", "Severity": severity}
                            for i, severity in enumerate(severities)
                        ],
                    }
                ],
            },
        },
        "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished},
    }


async def attach_bundle(
    client: registries.RegistryClient, host: str, repository: str, subject: str, bundle: bytes
) -> str:
    """Attach a sigstore bundle to an image as cosign does: a referrer manifest and the
    tag-schema index (the test registry has no Referrers API). Returns the manifest digest."""
    empty = b"{}"
    config_digest = await pushing.put_blob(client, host, repository, empty)
    layer_digest = await pushing.put_blob(client, host, repository, bundle)
    subject_manifest = await client.get_manifest(host, repository, subject)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": registries.OCI_MANIFEST,
            "artifactType": bundles.BUNDLE_V03,
            "config": {
                "mediaType": bundles.EMPTY_CONFIG,
                "digest": config_digest,
                "size": len(empty),
            },
            "layers": [
                {"mediaType": bundles.BUNDLE_V03, "digest": layer_digest, "size": len(bundle)}
            ],
            "subject": {
                "mediaType": subject_manifest.media_type,
                "digest": subject,
                "size": len(subject_manifest.raw),
            },
        }
    ).encode()
    digest = registries.digest_of(manifest)
    await pushing.put_manifest(client, host, repository, digest, manifest, registries.OCI_MANIFEST)
    tag = "sha256-" + subject.removeprefix("sha256:")
    try:
        index = dict((await client.get_manifest(host, repository, tag)).document)
    except registries.NotFoundError:
        index = {"schemaVersion": 2, "mediaType": registries.OCI_INDEX, "manifests": []}
    index["manifests"] = [
        *index["manifests"],
        {
            "mediaType": registries.OCI_MANIFEST,
            "digest": digest,
            "size": len(manifest),
            "artifactType": bundles.BUNDLE_V03,
        },
    ]
    await pushing.put_manifest(
        client, host, repository, tag, json.dumps(index).encode(), registries.OCI_INDEX
    )
    return digest
