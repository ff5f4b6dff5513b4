"""The policy engine: pure functions from (workload, policies, facts) to a decision.

No I/O here, ever: no Kubernetes client, no HTTP, no files, no clock (``now`` is an
argument). The admission webhook, the operator's background audit and the offline
``modelshield test`` all call this one engine, so they can never disagree. The
import-linter contract in pyproject.toml keeps it that way.

Modules: ``facts`` (what the verifiers established), ``decisions`` (the engine's
answer), ``selectors``, ``workloads`` (finding pod specs and models in any kind),
``compiling`` (policies turned into fast, immutable rules ahead of time), the
``*checks`` modules (one per requirement block), ``startup`` (the startup
re-verification's init container: built, recognised and judged), ``evaluating`` (the
entry point) and ``redacting`` (credentials out of the URIs a message names).
"""
