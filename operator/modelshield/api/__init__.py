"""The modelshield.dev API: pydantic models that are the single source of truth.

Everything here is purely data-manipulative: no I/O, no Kubernetes client. The CRD
YAML under ``crds/`` and the chart is generated from these models by ``crdgen``.
"""
