"""modelshield: enforce MLSecOps controls on Kubernetes model deployments.

Packages, in layers (higher may import lower, never the reverse; `.importlinter` in
pyproject.toml checks the I/O-free ones):

- ``modelshield.api``: the ``modelshield.dev/v1alpha1`` resources as pydantic models
  and the CRD generator. Pure data, no I/O.
- ``modelshield.engine``: the policy engine. Pure functions from (workload, policies,
  facts) to a decision. No I/O, no Kubernetes client.
- ``modelshield.supplychain``: the only code that talks to registries and model stores.
- ``modelshield.controllers``: kopf reconcile loops (the operator).
- ``modelshield.cli``: the ``modelshield`` command.
"""

__version__ = "0.1.0"
