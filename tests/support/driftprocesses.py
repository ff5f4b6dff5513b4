"""The drift monitor as a real process: start it on a free port, talk to it over HTTP."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class MonitorProcess:
    """`modelshield drift-monitor` running as a child process."""

    process: subprocess.Popen[bytes]
    port: int
    log: pathlib.Path

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def post(
        self, body: bytes, headers: Mapping[str, str] | None = None, path: str = "/"
    ) -> tuple[int, bytes]:
        """POST and return (status, body), whatever the status."""
        url = self.url + path  # always http on loopback
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def get(self, path: str) -> tuple[int, str]:
        """GET and return (status, text)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def metric(self, name: str) -> float:
        """One sample of /metrics (0 when absent, as Prometheus would read a missing counter)."""
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_for(self, name: str, value: float, timeout: float = 10.0) -> None:
        """Wait until a metric reaches a value (the worker counts in the background)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.metric(name) == value:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"{name} is {self.metric(name)}, not {value}; log:\n{self.log.read_text()}"
        )

    def stop(self) -> int:
        """SIGTERM, wait, return the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def modelshield(
    *arguments: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the modelshield command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "modelshield.cli.main", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPOSITORY,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start(
    config_file: pathlib.Path, log: pathlib.Path, env: Mapping[str, str] | None = None
) -> MonitorProcess:
    """Start a monitor and wait until /readyz answers 200."""
    port = free_port()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelshield.cli.main",
                "drift-monitor",
                "--config",
                str(config_file),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY,
            env={**os.environ, **(env or {})},
        )
    monitor = MonitorProcess(process, port, log)
    # Generous: start-up imports and calibration took 14 s of a 30 s deadline at load 15.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the monitor exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            if monitor.get("/readyz")[0] == 200:
                return monitor
        except OSError:
            pass
        time.sleep(0.1)
    monitor.stop()
    raise AssertionError(f"the monitor did not become ready:\n{log.read_text()}")


def write_config(directory: pathlib.Path, **settings: object) -> pathlib.Path:
    """A monitor configuration file next to profile.json."""
    path = directory / "monitor.yaml"
    path.write_text(json.dumps({"profile": "profile.json", **settings}))
    return path
