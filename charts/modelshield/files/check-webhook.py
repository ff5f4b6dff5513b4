"""`helm test`: the webhook answers over TLS, with a certificate from its own CA.

Checks /readyz (every cache synced) and sends one AdmissionReview to /validate, expecting
an answer for the same uid. Whether the Pod in the review is allowed does not matter here;
that the server decides does.
"""

import json
import os
import ssl
import sys
import urllib.request
import uuid

base = os.environ["MODELSHIELD_WEBHOOK_URL"].rstrip("/")
namespace = os.environ.get("MODELSHIELD_TEST_NAMESPACE", "default")
context = ssl.create_default_context(cafile=os.environ["MODELSHIELD_CA_FILE"])

with urllib.request.urlopen(base + "/readyz", context=context, timeout=10) as response:
    print(f"/readyz: {response.status} {response.read().decode().strip()}")

uid = str(uuid.uuid4())
review = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "modelshield-helm-test",
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:modelshield:helm-test"},
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "modelshield-helm-test", "namespace": namespace},
            "spec": {"containers": [{"name": "probe", "image": "registry.invalid/probe:1"}]},
        },
        "oldObject": None,
        "dryRun": True,
    },
}
request = urllib.request.Request(  # noqa: S310 - the URL is the chart's own Service
    base + "/validate",
    data=json.dumps(review).encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(request, context=context, timeout=30) as response:
    answer = json.load(response)
got = (answer.get("response") or {}).get("uid")
if got != uid:
    print(f"/validate answered for uid {got!r}, not {uid!r}: {answer}", file=sys.stderr)
    sys.exit(1)
print(f"/validate answered: allowed={answer['response'].get('allowed')}")
