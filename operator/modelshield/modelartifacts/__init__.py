"""Model artifacts: sign, verify, scan and fetch model files, and reconcile a ModelArtifact.

Everything here works on a local directory of model files. Only the fetchers talk to model
stores: ``fetching`` (by URI scheme) over ``buckets`` (S3), ``ociartifacts`` (OCI) and
``localpaths``, all writing through ``streaming`` under the terms of ``transfers``
(settings, budget, errors), which imports none of them; ``reconciling`` and ``startup`` are pure builders; nothing here ever unpickles,
imports or executes a model file.
"""
