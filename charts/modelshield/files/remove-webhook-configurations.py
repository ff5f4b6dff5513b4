"""Pre-delete hook: remove this release's webhook configurations before anything else.

Runs in the modelshield image (the kubernetes client is installed there). Outside a pod
it uses $KUBECONFIG, so the same script is exercised by the e2e suite. Absent objects are
fine: the point is that none is left behind pointing at a server that is going away.
"""

import os
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException

if os.environ.get("KUBERNETES_SERVICE_HOST"):
    config.load_incluster_config()
else:
    config.load_kube_config()
api = client.AdmissionregistrationV1Api()
name = os.environ["MODELSHIELD_WEBHOOK_CONFIGURATION"]
failed = False
for kind, delete in (
    ("ValidatingWebhookConfiguration", api.delete_validating_webhook_configuration),
    ("MutatingWebhookConfiguration", api.delete_mutating_webhook_configuration),
):
    try:
        delete(name)
        print(f"deleted {kind} {name}")
    except ApiException as error:
        if error.status == 404:
            print(f"{kind} {name} was already gone")
        else:
            failed = True
            print(f"cannot delete {kind} {name}: {error.status} {error.reason}", file=sys.stderr)
sys.exit(1 if failed else 0)
