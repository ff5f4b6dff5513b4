"""Chat templates judged on Jinja2's AST, ONNX external data on the onnx schema (issue 21).

The old checks were byte and text patterns: a template reaching ``__class__`` through a
built string, or an external-data entry whose value comes before its key (or whose
location is 128 bytes or longer), passed. Each file here is built from bytes.
"""

from __future__ import annotations

import pathlib

import pytest

from modelshield.api.v1alpha1.common import Severity
from modelshield.modelartifacts.scanning import catalog, findings
from tests.support import modelfiles as models

# The published llama-cpp-python exploit (CVE-2024-34359), and rewrites of it.
_PUBLISHED = (
    "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
    "{{ x()._module.__builtins__['__import__']('os').popen('id').read() }}{% endif %}{% endfor %}"
)


def _scan(tmp_path: pathlib.Path, name: str, write: object) -> findings.ScanReport:
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    assert callable(write)
    write(model / name)
    return catalog.scan_directory(model)


@pytest.mark.parametrize(
    "template",
    [
        _PUBLISHED,
        # The attribute name built from parts: no "__class__" in the text.
        "{{ ()['__cla' ~ 'ss__']['__ba' ~ 'se__'] }}",
        "{{ ()|attr('_' ~ '_class_' ~ '_') }}",
        "{{ ()|attr(['__', 'class', '__']|join) }}",
        "{{ ''['%s%s%s'|format('__', 'globals', '__')] }}",
        # Reordered and spaced so that no simple pattern sees it.
        "{%set c=cycler%}{{ c . __init__ . __globals__ }}",
        "{{ self._TemplateReference__context }}",
    ],
    ids=["published", "concat", "attr-concat", "attr-join", "format", "cycler", "self"],
)
def test_templates_reaching_python_are_critical(tmp_path: pathlib.Path, template: str) -> None:
    report = _scan(tmp_path, "model.gguf", lambda path: models.gguf_file(path, template))

    assert report.worst() is Severity.CRITICAL, report.findings


@pytest.mark.parametrize(
    "template",
    [
        # Shapes of real chat templates (Llama 3, ChatML, Mistral): loops, namespace,
        # subscripts by key and index, filters, raise_exception.
        "{% set ns = namespace(system='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}{% endif %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content']|trim"
        " + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
        "(loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}"
        "{{ messages[loop.index0]['content'] }}{% endfor %}",
    ],
    ids=["llama3", "chatml", "mistral"],
)
def test_ordinary_chat_templates_have_no_findings(tmp_path: pathlib.Path, template: str) -> None:
    report = _scan(tmp_path, "model.gguf", lambda path: models.gguf_file(path, template))

    assert report.findings == []


def test_a_template_that_does_not_parse_is_reported(tmp_path: pathlib.Path) -> None:
    report = _scan(tmp_path, "model.gguf", lambda path: models.gguf_file(path, "{% for %}"))

    assert report.worst() is Severity.MEDIUM


def _field(number: int, payload: bytes) -> bytes:
    return models._varint(number << 3 | 2) + models._varint(len(payload)) + payload


def _onnx_with_tensor(tensor: bytes, where: str = "initializer") -> bytes:
    node = _field(1, b"x") + _field(2, b"y") + _field(4, b"Identity")
    graph = _field(1, node) + _field(2, b"g")
    if where == "initializer":
        graph += _field(5, tensor)
    elif where == "attribute":
        # NodeProto.attribute (5) -> AttributeProto.t (5)
        graph += _field(
            1, _field(4, b"Constant") + _field(5, _field(1, b"value") + _field(5, tensor))
        )
    elif where == "subgraph":
        inner = _field(5, tensor)
        # NodeProto.attribute -> AttributeProto.g (6) -> GraphProto.initializer
        graph += _field(1, _field(4, b"If") + _field(5, _field(1, b"then") + _field(6, inner)))
    return models._varint(1 << 3) + models._varint(8) + _field(7, graph)


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        # The value before the key: a byte pattern looking for "location" then a value
        # never matched this.
        (_field(2, b"../../etc/passwd") + _field(1, b"location"), "initializer"),
        # A location of 128 bytes or more has a two-byte length.
        (_field(1, b"location") + _field(2, b"../" * 50 + b"secret"), "initializer"),
        (_field(1, b"location") + _field(2, b"/var/run/secrets/token"), "attribute"),
        (_field(1, b"location") + _field(2, b"..\\..\\key.pem"), "subgraph"),
    ],
    ids=["value-first", "long", "in-attribute", "in-subgraph"],
)
def test_onnx_external_data_outside_the_model_is_found(
    tmp_path: pathlib.Path, entry: bytes, where: str
) -> None:
    tensor = _field(8, b"w") + _field(13, entry)
    data = _onnx_with_tensor(tensor, where)

    report = _scan(tmp_path, "model.onnx", lambda path: path.write_bytes(data))

    assert report.worst() is Severity.HIGH, report.findings
    assert any("leaves the model directory" in f.reason for f in report.findings)


def test_onnx_external_data_inside_the_model_is_fine(tmp_path: pathlib.Path) -> None:
    entry = _field(1, b"location") + _field(2, b"weights/w.bin")
    data = _onnx_with_tensor(_field(8, b"w") + _field(13, entry))

    assert _scan(tmp_path, "model.onnx", lambda path: path.write_bytes(data)).findings == []


def test_tokenizer_config_chat_templates_are_judged_too(tmp_path: pathlib.Path) -> None:
    import json

    config = {
        "chat_template": [
            {"name": "default", "template": "{{ messages[0]['content'] }}"},
            {"name": "tool_use", "template": "{{ ()['__cla' ~ 'ss__'] }}"},
        ]
    }

    report = _scan(
        tmp_path, "tokenizer_config.json", lambda path: path.write_text(json.dumps(config))
    )

    assert report.worst() is Severity.CRITICAL
    assert [f.location for f in report.findings] == ["chat_template 'tool_use'"]
