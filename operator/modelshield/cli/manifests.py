"""Read Kubernetes manifests from YAML files and directories, remembering where each came from."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

import pydantic
import yaml

from modelshield.api.v1alpha1 import artifacts, policies, validation

_POLICY_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "ModelSecurityPolicy": policies.ModelSecurityPolicy,
    "ClusterModelSecurityPolicy": policies.ClusterModelSecurityPolicy,
    "ModelArtifact": artifacts.ModelArtifact,
}


class ManifestError(Exception):
    """Input that cannot be used, with the file, the document and the field path."""


@dataclasses.dataclass(frozen=True)
class Document:
    """One YAML document and where it came from."""

    file: pathlib.Path
    index: int
    body: dict[str, Any]

    @property
    def where(self) -> str:
        """file, document number, and kind/name for messages."""
        metadata = self.body.get("metadata") if isinstance(self.body.get("metadata"), dict) else {}
        name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
        return f"{self.file}: document {self.index + 1} ({self.body.get('kind', '?')} {name})"


def _yaml_files(paths: Iterable[pathlib.Path]) -> Iterator[pathlib.Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or directory")


def read_documents(paths: Iterable[pathlib.Path]) -> list[Document]:
    """Every non-empty document of every YAML file under the paths, in a stable order."""
    documents: list[Document] = []
    for file in _yaml_files(paths):
        try:
            loaded = list(yaml.safe_load_all(file.read_text()))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as error:
            raise ManifestError(f"{file}: not readable YAML: {error}") from error
        for index, body in enumerate(loaded):
            if body is None:
                continue
            if not isinstance(body, dict):
                raise ManifestError(f"{file}: document {index + 1}: not a mapping")
            if body.get("kind") == "List" and isinstance(body.get("items"), list):
                documents.extend(Document(file, index, item) for item in body["items"])
            else:
                documents.append(Document(file, index, body))
    return documents


def field_path(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as a Kubernetes field path: spec.images.signers[0].publicKey."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def describe_validation_error(error: pydantic.ValidationError) -> list[str]:
    """One line per problem: field path and message."""
    lines = []
    for problem in error.errors():
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{field_path(problem['loc']) or '(root)'}: {message}")
    return lines


def parse_custom_resource(document: Document) -> pydantic.BaseModel:
    """Validate a modelshield document with the rules admission applies
    (``api.v1alpha1.validation``: the API models and what a schema cannot say);
    ManifestError with field paths."""
    found = validation.problems_of(document.body)
    if found:
        details = "; ".join(f"{path}: {problem}" for path, problem in found)
        raise ManifestError(f"{document.where}: {details}")
    model = _POLICY_MODELS[str(document.body["kind"])]
    try:
        return model.model_validate(document.body)
    except pydantic.ValidationError as error:  # the status, which admission does not judge
        details = "; ".join(describe_validation_error(error))
        raise ManifestError(f"{document.where}: {details}") from error


def is_modelshield_kind(document: Document) -> bool:
    """Whether the document is one of modelshield's own kinds."""
    api_version = str(document.body.get("apiVersion", ""))
    return (
        api_version.startswith("modelshield.dev/") and document.body.get("kind") in _POLICY_MODELS
    )
