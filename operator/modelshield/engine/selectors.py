"""Label selectors compiled into fast predicates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from modelshield.api.v1alpha1 import common


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """A compiled Kubernetes label selector. The empty selector matches everything."""

    required: tuple[tuple[str, str], ...] = ()
    within: tuple[tuple[str, frozenset[str]], ...] = ()
    not_within: tuple[tuple[str, frozenset[str]], ...] = ()
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the labels satisfy every term of the selector."""
        for key, value in self.required:
            if labels.get(key) != value:
                return False
        for key, values in self.within:
            if labels.get(key) not in values:
                return False
        for key, values in self.not_within:
            if labels.get(key) in values:
                return False
        for key in self.present:
            if key not in labels:
                return False
        return all(key not in labels for key in self.absent)


def compile_selector(selector: common.LabelSelector) -> Selector:
    """Turn the API's selector into a predicate, once, ahead of evaluation."""
    within, not_within, present, absent = [], [], [], []
    for expression in selector.match_expressions:
        if expression.operator == "In":
            within.append((expression.key, frozenset(expression.values)))
        elif expression.operator == "NotIn":
            not_within.append((expression.key, frozenset(expression.values)))
        elif expression.operator == "Exists":
            present.append(expression.key)
        else:
            absent.append(expression.key)
    return Selector(
        required=tuple(sorted(selector.match_labels.items())),
        within=tuple(within),
        not_within=tuple(not_within),
        present=tuple(present),
        absent=tuple(absent),
    )
