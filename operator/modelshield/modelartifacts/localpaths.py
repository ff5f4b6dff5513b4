"""Where file:// and pvc:// URIs may point: confined to the operator's settings.

``pvc://CLAIM/PATH`` is the claim of that name in the artifact's own namespace, mounted at
``pvc_root/NAMESPACE/CLAIM``; ``file://PATH`` must lie under one of the configured
``file_roots``. Without this a ModelArtifact could read another tenant's claim
(``pvc://../other``) or the operator's own files, and the status listed what was there.
"""

from __future__ import annotations

import pathlib
import re
import urllib.parse

from modelshield.modelartifacts import transfers

_CLAIM_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def local_path(uri: str, settings: transfers.Settings, namespace: str) -> pathlib.Path:
    """The confined local path of a file:// or pvc:// URI, or FetchError.

    ``pvc://CLAIM/PATH`` is the claim of that name in the artifact's own namespace, mounted
    at ``pvc_root/NAMESPACE/CLAIM``; ``file://PATH`` must lie under one of the configured
    ``file_roots`` (none by default: file:// is refused). No ``..``, and the real path
    (symlinks resolved) must stay under its root, so an artifact can read neither another
    tenant's claim nor the operator's own files.
    """
    split = urllib.parse.urlsplit(uri)
    relative = urllib.parse.unquote(split.path)
    if ".." in pathlib.PurePosixPath(relative).parts:
        raise transfers.FetchError(
            transfers.NOT_ALLOWED, f"refusing {uri}: '..' is not allowed in a model path"
        )
    if split.scheme == "pvc":
        claim = urllib.parse.unquote(split.netloc)
        if not namespace or not _CLAIM_NAME.match(claim):
            raise transfers.FetchError(
                transfers.NOT_ALLOWED, f"refusing {uri}: {claim!r} is not a claim name"
            )
        roots: tuple[pathlib.Path, ...] = (settings.pvc_root / namespace / claim,)
        path = roots[0] / relative.lstrip("/")
    else:
        if split.netloc not in ("", "localhost"):
            raise transfers.FetchError(
                transfers.NOT_ALLOWED, f"refusing {uri}: file:// names no remote host"
            )
        roots = settings.file_roots
        path = pathlib.Path(relative)
        if not roots:
            raise transfers.FetchError(
                transfers.NOT_ALLOWED,
                f"refusing {uri}: file:// is allowed only under the operator's file roots, "
                "and none are configured (--file-root, MODELSHIELD_FILE_ROOTS)",
            )
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise transfers.FetchError(
            transfers.NOT_ALLOWED, f"refusing {uri}: it leaves the directories allowed to it"
        )
    return resolved
