"""Text files that ship with models: configs, tokenizers, the signature, and Python code."""

from __future__ import annotations

import json

from modelshield.modelartifacts.scanning import findings, keras_models, scanners, templates

_TEXT_LIMIT = 64 << 10


class SignatureBundleScanner:
    """The model-signing bundle: verified, not scanned."""

    name = "signature"

    def matches(self, name: str, head: bytes) -> bool:
        """model.sig at any depth."""
        return name.rsplit("/", 1)[-1] == "model.sig" and head.lstrip()[:1] == b"{"

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Must be JSON."""
        json.loads(bytes(data))
        return []


class PythonSourceScanner:
    """Python source shipped with a model runs with trust_remote_code and the like."""

    name = "python"

    def matches(self, name: str, head: bytes) -> bool:
        """.py files."""
        return name.endswith((".py", ".pyc", ".pyw"))

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Always a finding: the code would run in the model server."""
        return [
            findings.Finding(
                findings.MEDIUM,
                name,
                "",
                "Python code shipped with the model (runs if loaded with trust_remote_code)",
            )
        ]


class JsonScanner:
    """JSON configs (Keras config.json, tokenizer files): parsed, Lambda layers flagged."""

    name = "json"

    def matches(self, name: str, head: bytes) -> bool:
        """.json files, or content starting like a JSON object."""
        return name.endswith(".json") or head.lstrip()[:1] == b"{"

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """Parse, then look for Keras Lambda layers and references outside Keras."""
        try:
            document = json.loads(bytes(data))
        except ValueError as error:
            return [findings.Finding(findings.LOW, name, "", f"not valid JSON: {error}")]
        return keras_models.config_findings(document, name) + _chat_templates(document, name)


class TextScanner:
    """Plain UTF-8 text: vocabularies, merges, READMEs, licences."""

    name = "text"

    def matches(self, name: str, head: bytes) -> bool:
        """Decodes as UTF-8 and holds no NUL byte."""
        if b"\x00" in head or not head:
            return not head
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as error:
            return error.start >= len(head) - 4  # a character cut by the 512-byte head
        return True

    def scan(
        self, data: scanners.Buffer, name: str, context: scanners.Context
    ) -> list[findings.Finding]:
        """The whole file must be text, else it is not scanned and says so."""
        for start in range(0, len(data), _TEXT_LIMIT):
            chunk = bytes(data[start : start + _TEXT_LIMIT + 4])
            if b"\x00" in chunk[:_TEXT_LIMIT]:
                return [
                    findings.Finding(
                        findings.MEDIUM, name, f"offset {start}", "binary data after a text start"
                    )
                ]
        return []


def _chat_templates(document: object, name: str) -> list[findings.Finding]:
    """Findings of the chat templates of a tokenizer_config.json (one, or a named list)."""
    if not isinstance(document, dict):
        return []
    value = document.get("chat_template")
    named: list[tuple[str, object]] = [("chat_template", value)] if isinstance(value, str) else []
    if isinstance(value, list):
        named = [
            (f"chat_template {entry.get('name', index)!r}", entry.get("template"))
            for index, entry in enumerate(value)
            if isinstance(entry, dict)
        ]
    found: list[findings.Finding] = []
    for where, template in named:
        if isinstance(template, str):
            found.extend(templates.template_findings(template, name, where))
    return found
