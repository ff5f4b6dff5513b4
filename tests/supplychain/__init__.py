"""Tests of the supply-chain verifiers: unit tests of the pure parts, integration tests with a real registry and cosign."""
