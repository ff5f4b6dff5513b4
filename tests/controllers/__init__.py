"""Unit tests of the operator's pure builders and reconciler logic."""
