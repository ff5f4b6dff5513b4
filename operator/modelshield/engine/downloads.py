"""What KServe's storage initializer downloads: the URI it builds for a ``storage`` spec,
and for a model URI the set of files, against what a ModelArtifact of that URI covers.

Read from the ``kserve_storage`` package (v0.15.2, v0.17.0) that the storage initializer
runs, and from the operator's fetch (``modelartifacts.fetching``): where the two sets
differ, no verification covers what is served, so the URI is refused with what to write.
"""

from __future__ import annotations

import re
from typing import Any

#: credentials.StorageBucketTypes: the storage types whose URI includes a bucket.
_BUCKET_TYPES = frozenset({"s3"})

#: Where the ``kserve_storage`` package downloads more than the URI's own directory.
_PREFIX_LISTINGS = (
    re.compile(r"https://(.+?)\.blob\.core\.windows\.net/(.+)"),
    re.compile(r"https://(.+?)\.z[0-9]{1,2}\.blob\.storage\.azure\.net/(.+)"),
    re.compile(r"https://(.+?)\.file\.core\.windows\.net/(.+)"),
    re.compile(r"https://(.+?)\.z[0-9]{1,2}\.file\.storage\.azure\.net/(.+)"),
)
_GIT = re.compile(r"https://.+\.git")


def download_boundary_problem(uri: str) -> str | None:
    """Why the storage initializer would download more than a ModelArtifact of this URI
    covers, or None.

    ``Storage._download_s3`` lists ``bucket.objects.filter(Prefix=path)``: without a
    trailing slash every key that merely starts with the path is downloaded too
    (``models/fraud-evil/...`` for ``s3://b/models/fraud``), while the operator verifies
    the directory ``models/fraud/``. Azure URLs are listed by name prefix the same way,
    and a ``.git`` URL is cloned, where the operator fetches one file.
    """
    if uri.startswith("s3://") and not uri.endswith("/"):
        return (
            "KServe's storage initializer downloads every object whose key starts with the "
            "path (siblings such as '<path>-other/' too), not only the directory that a "
            "ModelArtifact covers; end the URI with '/' (here and in the ModelArtifact)"
        )
    if any(pattern.search(uri) for pattern in _PREFIX_LISTINGS):
        return (
            "KServe's storage initializer downloads every Azure blob whose name starts with "
            "the path, which no ModelArtifact verifies; serve the model from s3://, oci:// "
            "or pvc://"
        )
    if _GIT.search(uri):
        return (
            "KServe's storage initializer clones a git repository, which no ModelArtifact verifies"
        )
    return None


def storage_spec_uri(path: str, parameters: Any) -> tuple[str | None, str]:
    """The URI KServe builds for ``storage.path`` (credentials.CreateStorageSpecSecretEnvs).

    ``parameters`` override the storage Secret's ``type`` and ``bucket``; without them the
    Secret decides, which admission does not read: (None, why).
    """
    params = parameters if isinstance(parameters, dict) else {}
    kind, bucket = params.get("type"), params.get("bucket")
    relative = path.removeprefix("/")
    if not isinstance(kind, str) or not kind:
        return None, (
            "its storage type and bucket come from the storage Secret, which admission does "
            "not read; name them in storage.parameters (type, bucket)"
        )
    if kind not in _BUCKET_TYPES:
        return f"{kind}://{relative}", ""
    if not isinstance(bucket, str) or not bucket:
        return None, (
            "its bucket comes from the storage Secret, which admission does not read; name "
            "it in storage.parameters.bucket"
        )
    return f"{kind}://{bucket}/{relative}", ""
