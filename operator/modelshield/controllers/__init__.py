"""The operator's reconcile loops, run by kopf (``modelshield operator``).

``builders/`` holds pure functions that turn policies and workloads into the objects the
operator owns (NetworkPolicies, drift monitors, PolicyReports); they do no I/O and are
tested on their own. The other modules do I/O: ``policies`` (the policy reconciler and its
kopf handlers), ``imageverdicts`` (image verdicts: looked up without I/O, verified promptly in
the background, with the Secrets the flags allow), ``auditing`` (the periodic background
audit), ``certificates`` (webhook
certificates when cert-manager is absent), ``artifacts`` (the ModelArtifact reconciler),
``servingindex`` (``status.servedBy`` of every ModelArtifact: the workloads serving it),
``modelkeypublishing`` (the ``modelshield-model-keys`` ConfigMap of verified artifacts' signer keys,
read by the startup re-verification; both ModelArtifact controllers read the policies from
the policy reconciler's ``caches.World``), ``namespacelabelling`` (the ``modelshield.dev/ungoverned``
namespace label that keeps namespaces no policy governs out of the webhooks), ``settings`` (kopf settings) and ``rbac`` (the exact
RBAC rules all of this needs, as data).
``verdicts`` is pure (compliant, violating or pending, from a decision); ``observing``
makes a policy's observation for its status, asking ``imageverdicts`` for missing verdicts.

Every handler module exposes ``register(registry, ...)``, which attaches its handlers to a
dedicated ``kopf.OperatorRegistry``; importing a module registers nothing.
"""
