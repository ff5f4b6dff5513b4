"""Jinja chat templates (GGUF metadata, tokenizer_config.json): judged on Jinja2's own AST.

A serving runtime renders the template of the model it loads; one that renders it outside
Jinja2's sandbox (llama-cpp-python before 0.2.72: CVE-2024-34359) runs whatever Python the
template reaches through attributes such as ``__class__`` or ``__globals__``. Text patterns
miss those reached by string building (``x["__cla" ~ "ss__"]``) or reordering; the AST
does not: the template is parsed with Jinja2's parser (parsing runs nothing) and every
attribute access, subscript and ``attr`` filter is judged by what it names.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from jinja2 import TemplateSyntaxError, nodes, sandbox

from modelshield.modelartifacts.scanning import findings

#: Globals that the sandbox offers and that reach Python objects in public exploits
#: (``cycler.__init__.__globals__.os``); no chat template needs them. ``self`` is the
#: template reference, whose private attributes lead to the rendering context.
_GLOBALS_REACHING_PYTHON = frozenset({"cycler", "joiner", "lipsum", "self"})
#: Filters that build a string from parts: their result used as an attribute name is
#: computed, not written.
_BUILDING_FILTERS = frozenset({"join", "format", "replace", "reverse", "string", "lower", "upper"})


@functools.cache
def _environment() -> sandbox.ImmutableSandboxedEnvironment:
    return sandbox.ImmutableSandboxedEnvironment()


def _builds_a_string(node: nodes.Node) -> bool:
    """Whether an expression computes a string (concatenation, formatting, filters)."""
    if isinstance(node, nodes.Concat | nodes.Mod):
        return True
    if isinstance(node, nodes.Add):
        return True
    if isinstance(node, nodes.Filter) and node.name in _BUILDING_FILTERS:
        return True
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        return node.node.attr in ("format", "join", "replace", "__add__")
    return False


def _private(name: object) -> bool:
    return isinstance(name, str) and name.startswith("_")


def _problems(tree: nodes.Template) -> Iterator[str]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Name)):
        if isinstance(node, nodes.Getattr) and _private(node.attr):
            yield f"attribute {node.attr!r}"
        elif isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Const) and _private(node.arg.value):
                yield f"item {node.arg.value!r}"
            elif _builds_a_string(node.arg):
                yield "an item whose name is computed"
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            argument = node.args[0] if node.args else None
            if not isinstance(argument, nodes.Const):
                yield "the attr filter with a computed name"
            elif _private(argument.value):
                yield f"attr({argument.value!r})"
        elif isinstance(node, nodes.Name) and node.name in _GLOBALS_REACHING_PYTHON:
            yield f"the global {node.name!r}"


def template_findings(template: str, file: str, location: str) -> list[findings.Finding]:
    """Findings for one chat template (none for an ordinary one)."""
    try:
        tree = _environment().parse(template)
    except TemplateSyntaxError as error:
        return [
            findings.Finding(
                findings.MEDIUM,
                file,
                location,
                f"chat template does not parse as Jinja2 ({error.message}): it cannot be "
                "checked, and a runtime with another template engine may still render it",
            )
        ]
    reached = sorted(set(_problems(tree)))
    if not reached:
        return []
    return [
        findings.Finding(
            findings.CRITICAL,
            file,
            location,
            f"chat template reaches Python internals through {', '.join(reached)}: "
            "server-side template injection when rendered outside the Jinja2 sandbox",
        )
    ]
