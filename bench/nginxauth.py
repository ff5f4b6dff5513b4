"""The chain users build today in front of a model server, for the guard's benchmark:
nginx (Debian's package) with ``limit_req`` per API key and ``auth_request`` to a small
authentication endpoint that checks the key's SHA-256, as the guard does.

nginx runs one worker (one core, like the guard's one event loop), keep-alive to the
model server and to the endpoint; the endpoint is a small aiohttp app in a process of
its own. Missing nginx is not an error: the benchmark says the comparison was skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import shutil
import signal
import subprocess
import sys

from aiohttp import web

#: The rate never refuses in the benchmark (as for the guard): what is measured is the cost.
CONFIG = """
daemon off;
master_process on;
worker_processes 1;
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {scratch}/body;
    proxy_temp_path {scratch}/proxy;
    fastcgi_temp_path {scratch}/fastcgi;
    uwsgi_temp_path {scratch}/uwsgi;
    scgi_temp_path {scratch}/scgi;
    limit_req_zone $http_x_api_key zone=perclient:10m rate=1000000r/s;
    upstream model {{ server 127.0.0.1:{model_port}; keepalive 64; }}
    upstream auth {{ server 127.0.0.1:{auth_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            limit_req zone=perclient burst=1000000 nodelay;
            auth_request /_auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://model;
        }}
        location = /_auth {{
            internal;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://auth/auth;
        }}
    }}
}}
"""


def auth_app(key: str) -> web.Application:
    """200 for the one known API key (compared by SHA-256, as the guard keeps keys), else 401."""
    digest = hashlib.sha256(key.encode()).hexdigest()

    async def check(request: web.Request) -> web.Response:
        given = request.headers.get("X-Api-Key", "")
        status = 200 if hashlib.sha256(given.encode()).hexdigest() == digest else 401
        return web.Response(status=status)

    app = web.Application()
    app.router.add_get("/auth", check)
    return app


@dataclasses.dataclass
class Chain:
    """nginx and its authentication endpoint, running."""

    port: int
    nginx: subprocess.Popen[bytes]
    endpoint: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        """Every process of the chain: nginx's master and workers, the endpoint."""
        workers = subprocess.run(
            ["pgrep", "-P", str(self.nginx.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [self.nginx.pid, *map(int, workers), self.endpoint.pid]

    def stop(self) -> None:
        """Stop both."""
        for process in (self.nginx, self.endpoint):
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: a benchmark never leaves a process behind."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start(
    scratch: pathlib.Path, *, port: int, auth_port: int, model_port: int, event_loop: str
) -> Chain | None:
    """Start the endpoint and nginx (None when nginx is not installed)."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if pathlib.Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (scratch / name).mkdir(exist_ok=True)
    config = scratch / "nginx.conf"
    config.write_text(
        CONFIG.format(scratch=scratch, port=port, auth_port=auth_port, model_port=model_port)
    )
    endpoint = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_guard_cpu", "--role=auth", f"--port={auth_port}",
         f"--event-loop={event_loop}"]
    )  # fmt: skip
    server = subprocess.Popen([nginx, "-c", str(config), "-p", str(scratch)])
    return Chain(port=port, nginx=server, endpoint=endpoint)
