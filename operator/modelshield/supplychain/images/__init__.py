"""Container image signatures and attestations, verified against OCI registries.

Pure modules (no I/O): ``references`` (image reference parsing), ``credentials``
(docker config and pull-secret parsing, auth challenges), ``cosignsignatures``
(cosign's ``.sig``/``.att`` tag formats), ``bundles`` (sigstore bundles attached as OCI
referrers), ``attestations`` (in-toto statements in DSSE envelopes and the
vulnerability summaries in their predicates), ``signers`` (policy signers turned into
verifiers), ``judging`` (which signature and attestations hold, from fetched material)
and ``caching`` (the verification cache with single-flight).

I/O: ``registries`` (the OCI distribution client), ``pushing`` (uploads, for tests and
tooling), ``secretreading`` (the Secret cache over a reader the caller supplies),
``signerkeys`` (``secretRef`` signers given their Secret's key inline, through that cache)
and ``imageverifier`` (``ImageVerifier``, the real verifier).

The facts layer the admission server, the operator and the CLI share: ``verifiers`` (the
one ``Verifier`` interface, and ``verify_within``: verify within a deadline, else a
failed fact), ``gathering`` (a namespace's image facts within one deadline, Secret reads
included, under the ``SecretAccess`` allowed) and ``verifiersettings`` (one
``VerifierSettings``, from which every process builds its verifier and Secret access).
"""
