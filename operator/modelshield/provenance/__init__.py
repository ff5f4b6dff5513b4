"""Training provenance and lineage: in-toto statements (SLSA provenance v1), DSSE, lineage.

``statements`` builds and reads statements (pure), ``envelopes`` signs and verifies DSSE
envelopes with securesystemslib, ``checking`` is what the operator runs for one model
(no Kubernetes), ``lineage`` and ``bom`` answer "what is this built from / where does it
run" and export CycloneDX. The engine's judgement of the recorded facts lives in
``modelshield.engine.provenancechecks`` (pure, no I/O).
"""
