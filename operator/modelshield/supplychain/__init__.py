"""Supply-chain verifiers: the only code that talks to registries about what an artifact is.

Each subpackage verifies one kind of artifact and hands the engine facts
(``modelshield.engine.facts``), never decisions: ``images`` checks container image
signatures and attestations in OCI registries. Everything here is async, carries a
deadline, and turns every failure into a distinct ``facts.Outcome`` instead of raising.
"""
