"""The operator's reconcile loops, run by kopf (``modelshield operator``).

``builders/`` holds pure functions that turn policies and workloads into the objects the
operator owns (NetworkPolicies, drift monitors, PolicyReports); they do no I/O and are
tested on their own. The other modules do I/O: ``policies`` (the policy reconciler and its
kopf handlers), ``auditing`` (the periodic background audit), ``certificates`` (webhook
certificates when cert-manager is absent), ``artifacts`` (the ModelArtifact reconciler),
``settings`` (kopf settings) and ``rbac`` (the exact RBAC rules all of this needs, as data).

Every handler module exposes ``register(registry, ...)``, which attaches its handlers to a
dedicated ``kopf.OperatorRegistry``; importing a module registers nothing.
"""
