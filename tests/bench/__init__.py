"""Tests of the evaluation harnesses in bench/ (what they measure, not their figures)."""
