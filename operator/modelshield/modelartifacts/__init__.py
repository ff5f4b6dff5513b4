"""Model artifacts: sign, verify, scan and fetch model files, and reconcile a ModelArtifact.

Everything here works on a local directory of model files. Only the fetchers talk to model
stores: ``fetching`` (by URI scheme) over ``buckets`` (S3), ``ociartifacts`` (OCI) and
``localpaths``, all writing through ``streaming`` under the terms of ``transfers``
(settings, budget, errors), which imports none of them; ``reconciling`` is a pure builder
(the startup re-verification's init container is the engine's: ``engine.startup``); nothing
here ever unpickles, imports or executes a model file.
"""
