"""Test support: what tests/, e2e/ and bench/ share, in one package.

A helper belongs here when a module outside its own test area imports it: e2e/, bench/,
or another tests/<area>. Here are the stand-ins (verifier fakes, named for what they stand
in for), the local tools the tests run for real (cosign, an OCI registry, helm, a model
server, a sigstore trust root, a certificate authority), and the builders and data that
several areas use (workloads, policies, signed models and provenance, admission reviews).

What stays out: helpers that only their own area uses stay beside its tests, and
anything that needs a cluster (an API server, a node) lives in e2e/. No module imports a
test module (test_*.py) or a conftest.py; what two test modules share comes from here.
e2e/ and bench/ import from ``tests`` only ``tests.support`` (import-linter contract and
tests/test_architecture.py).
"""
