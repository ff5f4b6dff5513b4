"""Kubernetes syntax that policies hand on to NetworkPolicies: CIDRs and labels. Pure.

A value the API server would refuse in a NetworkPolicy must be refused where it enters
(the CRD schema, pydantic, the resource webhook, ``modelshield test``), never discovered
when the operator writes the NetworkPolicy: by then the workload's isolation is at stake.
Each rule exists twice, in the same words: as a CRD pattern or CEL rule (what the API
server enforces) and as a Python check (what pydantic and the NetworkPolicy builder
enforce); e2e/test_network_syntax.py compares the two on the real API server.
"""

from __future__ import annotations

import ipaddress
import re

#: An IPv4 octet without leading zeros.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_CIDR_PATTERN = rf"^({_OCTET}\.){{3}}{_OCTET}/(3[0-2]|[12]?[0-9])$"
#: IPv6 text is checked fully in Python; the schema checks its alphabet and prefix.
IPV6_CIDR_PATTERN = r"^[0-9a-f:.]*:[0-9a-f:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$"
CIDR_PATTERN = f"({IPV4_CIDR_PATTERN})|({IPV6_CIDR_PATTERN})"
CIDR_MESSAGE = (
    "must be a network address in canonical CIDR notation: host bits zero, a prefix "
    "length valid for its family (IPv4 up to 32, IPv6 up to 128), no leading zeros, "
    "IPv6 in lower case and shortest form, e.g. 10.0.0.0/8 or fd00::/8"
)

#: 2**(32 - prefix), by prefix: an IPv4 address is a network address when it is a
#: multiple of its block size. CEL has no exponentiation, but it can index a list.
_BLOCK_SIZES = ", ".join(str(2 ** (32 - prefix)) for prefix in range(33))
_IPV4_PART = "self.split('/')[0].split('.')"
IPV4_HOST_BITS_ZERO_RULE = (
    f"!self.matches(r'{IPV4_CIDR_PATTERN}') || ("
    f"int({_IPV4_PART}[0]) * 16777216 + int({_IPV4_PART}[1]) * 65536"
    f" + int({_IPV4_PART}[2]) * 256 + int({_IPV4_PART}[3])"
    f") % [{_BLOCK_SIZES}][int(self.split('/')[1])] == 0"
)
IPV4_HOST_BITS_MESSAGE = "IPv4 host bits must be zero (a network address, e.g. 10.0.0.0/8)"

LABEL_NAME_PATTERN = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_PREFIX_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_PATTERN = rf"^({LABEL_PREFIX_PATTERN}/)?{LABEL_NAME_PATTERN}$"
LABEL_KEY_MAX_LENGTH = 253 + 1 + 63
LABEL_PREFIX_MAX_LENGTH = 253
#: CEL: the prefix before '/' (when there is one) is at most 253 characters long.
LABEL_PREFIX_LENGTH_RULE = f"self.indexOf('/') <= {LABEL_PREFIX_MAX_LENGTH}"
LABEL_VALUE_PATTERN = rf"^({LABEL_NAME_PATTERN})?$"
LABEL_VALUE_MAX_LENGTH = 63
LABEL_KEY_MESSAGE = (
    "must be a Kubernetes label key: an optional DNS subdomain prefix (at most 253 "
    "characters) and '/', then a name of at most 63 characters that starts and ends "
    "with a letter or digit and has only letters, digits, '-', '_' and '.' between"
)
LABEL_VALUE_MESSAGE = (
    "must be a Kubernetes label value: empty, or at most 63 characters that start and "
    "end with a letter or digit and have only letters, digits, '-', '_' and '.' between"
)


def cidr_problem(text: str) -> str | None:
    """Why ``text`` is not a canonical network address in CIDR notation, or None."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as error:
        return f"{text!r} {CIDR_MESSAGE} ({error})"
    if "/" not in text:
        return f"{text!r} has no prefix length; {CIDR_MESSAGE}"
    if network.network_address != ipaddress.ip_interface(text).ip:
        return f"{text!r} has host bits set: write {network} (or a narrower block)"
    if str(network) != text:
        return f"{text!r} is not in canonical form: write {network}"
    return None


def canonical_cidr(text: str) -> str:
    """``text`` itself when it is canonical; ValueError saying why otherwise."""
    problem = cidr_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key, or None."""
    prefix, separator, _ = key.rpartition("/")
    if (
        len(key) > LABEL_KEY_MAX_LENGTH
        or (separator and len(prefix) > LABEL_PREFIX_MAX_LENGTH)
        or not re.fullmatch(LABEL_KEY_PATTERN.strip("^$"), key)
    ):
        return f"{key!r} {LABEL_KEY_MESSAGE}"
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid Kubernetes label value, or None."""
    if len(value) > LABEL_VALUE_MAX_LENGTH or not re.fullmatch(
        LABEL_VALUE_PATTERN.strip("^$"), value
    ):
        return f"{value!r} {LABEL_VALUE_MESSAGE}"
    return None


def label_key(key: str) -> str:
    """``key`` when valid; ValueError saying why otherwise (a pydantic validator)."""
    problem = label_key_problem(key)
    if problem is not None:
        raise ValueError(problem)
    return key


def label_value(value: str) -> str:
    """``value`` when valid; ValueError saying why otherwise (a pydantic validator)."""
    problem = label_value_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value
