"""`helm test`: the webhook answers over TLS, with a certificate from its own CA.

Checks /readyz (every cache synced) and sends one AdmissionReview to /validate, expecting
an answer for the same uid. Whether the Pod in the review is allowed does not matter here;
that the server decides does.

It reaches the webhook as the API server does: through the Service (at the address in
MODELSHIELD_WEBHOOK_ADDRESS, the cluster IP kubelet hands the pod, so cluster DNS is not
needed), verifying the certificate for the host of MODELSHIELD_WEBHOOK_URL, the Service's
DNS name. Without an address (a value kubelet did not expand) the host is resolved.
"""

import http.client
import json
import os
import socket
import ssl
import sys
import urllib.parse
import uuid

url = urllib.parse.urlsplit(os.environ["MODELSHIELD_WEBHOOK_URL"])
server_name, port = url.hostname or "", url.port or 443
address = os.environ.get("MODELSHIELD_WEBHOOK_ADDRESS", "")
if address and "$(" not in address:
    host, _, service_port = address.rpartition(":")
    target = (host.strip("[]"), int(service_port))
else:
    target = (server_name, port)
namespace = os.environ.get("MODELSHIELD_TEST_NAMESPACE", "default")
context = ssl.create_default_context(cafile=os.environ["MODELSHIELD_CA_FILE"])


class ServiceConnection(http.client.HTTPSConnection):
    """HTTPS to `target`, the certificate verified for the Service's name (SNI and Host too)."""

    def connect(self):
        connection = socket.create_connection(target, self.timeout)
        self.sock = context.wrap_socket(connection, server_hostname=self.host)


def call(path, body=None, timeout=10):
    connection = ServiceConnection(server_name, port, context=context, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request("POST" if body is not None else "GET", path, body, headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


print(f"webhook {server_name}:{port} at {target[0]}:{target[1]}")
status, text = call("/readyz")
print(f"/readyz: {status} {text.decode().strip()}")
if status != 200:
    sys.exit(1)

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
status, text = call("/validate", json.dumps(review).encode(), timeout=30)
if status != 200:
    print(f"/validate: HTTP {status}: {text[:2000]!r}", file=sys.stderr)
    sys.exit(1)
answer = json.loads(text)
got = (answer.get("response") or {}).get("uid")
if got != uid:
    print(f"/validate answered for uid {got!r}, not {uid!r}: {answer}", file=sys.stderr)
    sys.exit(1)
print(f"/validate answered: allowed={answer['response'].get('allowed')}")
