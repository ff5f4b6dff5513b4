"""Tests of model signing, verification, scanning, fetching and the ModelArtifact reconciler."""
