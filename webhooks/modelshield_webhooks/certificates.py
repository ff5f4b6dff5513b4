"""The serving certificate, reloaded from its files when they change, without a restart.

The listening socket keeps one SSLContext whose SNI callback hands every new handshake
the newest *complete* context: a rotated pair is loaded into a fresh context first, so a
half-written rotation (new certificate, old key) is never served; it is retried on the
next poll. Connections already open keep the certificate they were made with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import ssl
from pathlib import Path

_logger = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class _Stamp:
    cert: tuple[int, int, int]
    key: tuple[int, int, int]


def _stamp(path: Path) -> tuple[int, int, int]:
    # mtime alone misses a same-second rewrite; the inode changes when a Secret
    # volume swaps its symlinked directory.
    status = path.stat()
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def _new_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


class ReloadingCertificate:
    """The server's TLS identity; ``context`` goes to the listening socket."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._stamp = self._current_stamp()
        self._current = _new_context(cert_file, key_file)
        self.context = _new_context(cert_file, key_file)
        self.context.sni_callback = self._choose
        self.reloads = 0
        self.failed_reloads = 0

    def _current_stamp(self) -> _Stamp:
        return _Stamp(_stamp(self.cert_file), _stamp(self.key_file))

    def _choose(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        # Called for every handshake, with or without SNI (the API server sends none
        # when the webhook URL names an IP address).
        connection.context = self._current
        return None

    def reload_if_changed(self) -> bool:
        """Load the files if they changed; True when a new certificate is now served."""
        try:
            stamp = self._current_stamp()
        except OSError as error:
            _logger.warning("cannot stat the serving certificate files: %s", error)
            return False
        if stamp == self._stamp:
            return False
        try:
            fresh = _new_context(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as error:
            # Mid-rotation the certificate and key may not match yet: keep serving the old.
            self.failed_reloads += 1
            _logger.warning("serving certificate not reloaded (will retry): %s", error)
            return False
        self._current = fresh
        self._stamp = stamp
        self.reloads += 1
        _logger.info("serving certificate reloaded from %s", self.cert_file)
        return True

    async def watch(self, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        """Poll the files until cancelled."""
        while True:
            await asyncio.sleep(poll_seconds)
            self.reload_if_changed()


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether a certificate or key file is there (for a clear CLI error)."""
    return Path(path).is_file()
