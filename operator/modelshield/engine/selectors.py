"""Label selectors compiled into fast predicates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from modelshield.api.v1alpha1 import common

Labels = Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """A compiled Kubernetes label selector. The empty selector matches everything."""

    #: Whether the labels satisfy every term of the selector.
    matches: Callable[[Labels], bool]
    #: The selector it was compiled from, for messages and builders.
    source: common.LabelSelector


def _everything(labels: Labels) -> bool:
    return True


def _predicate(selector: common.LabelSelector) -> Callable[[Labels], bool]:
    required = tuple(sorted(selector.match_labels.items()))
    expressions = tuple(
        (e.key, e.operator, frozenset(e.values)) for e in selector.match_expressions
    )
    if not required and not expressions:
        return _everything
    # The common selector is one or two matchLabels: give it a predicate with no loop.
    if len(required) == 1 and not expressions:
        ((key, value),) = required

        def one_label(labels: Labels) -> bool:
            return labels.get(key) == value

        return one_label

    def general(labels: Labels) -> bool:
        get = labels.get
        for key, value in required:
            if get(key) != value:
                return False
        for key, operator, values in expressions:
            if operator == "In":
                if get(key) not in values:
                    return False
            elif operator == "NotIn":
                if get(key) in values:
                    return False
            elif operator == "Exists":
                if key not in labels:
                    return False
            elif key in labels:
                return False
        return True

    return general


def compile_selector(selector: common.LabelSelector) -> Selector:
    """Turn the API's selector into a predicate, once, ahead of evaluation."""
    return Selector(matches=_predicate(selector), source=selector)
