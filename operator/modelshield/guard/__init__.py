"""The inference guard: a reverse proxy in front of a governed model server.

It enforces the ``api`` blocks of the policies that govern the workload (combined by
``modelshield.engine.apiprotection``): who may call (ServiceAccount tokens through a
TokenReview, API keys hashed in a Secret), which models and verbs, how often (token
buckets per client and per model), and what a request may look like (size, media type,
protocol, JSON shape). Every refusal is an HTTP status with a reason, a metric and an
audit line; credentials are never logged or forwarded.

Pure decision logic (``routes``, ``credentials``, ``ratelimits``, ``requestchecks``,
``judging``) is kept apart from I/O (``tokenreviews``, ``apikeys``, ``server``) so the
next defences (issue 15: out-of-distribution flags, probe detection, response hardening)
plug in as further stages of ``judging`` and ``server.Pipeline`` without touching the rest.
"""
