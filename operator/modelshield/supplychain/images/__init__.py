"""Container image signatures and attestations, verified against OCI registries.

Pure modules (no I/O): ``references`` (image reference parsing), ``cosignsignatures``
(cosign's simple-signing ``.sig`` format), ``bundles`` (sigstore bundles attached as
OCI referrers), ``attestations`` (in-toto statements in DSSE envelopes and the
vulnerability summaries in their predicates), ``signers`` (policy signers turned into
verifiers) and ``caching`` (the verification cache with single-flight).

I/O: ``credentials`` (docker config and pull-secret parsing, registry auth
challenges), ``registries`` (the OCI distribution client) and ``verifying``
(``ImageVerifier``, the entry point the webhook, the operator and the CLI use).
"""
