"""Model artifacts: sign, verify, scan and fetch model files, and reconcile a ModelArtifact.

Everything here works on a local directory of model files. Only ``fetching`` talks to model
stores; ``reconciling`` and ``startup`` are pure builders; nothing here ever unpickles,
imports or executes a model file.
"""
