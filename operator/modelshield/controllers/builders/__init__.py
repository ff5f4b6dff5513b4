"""Pure builders: (policies, workload, settings) → the Kubernetes objects the operator owns.

No I/O, no clock, no Kubernetes client: every function takes plain data and returns plain
``dict`` manifests, so each can be tested on its own and the reconcilers stay thin.
"""
