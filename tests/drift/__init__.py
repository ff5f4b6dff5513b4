"""Tests of the drift monitor (modelshield.drift and the drift CLI)."""
