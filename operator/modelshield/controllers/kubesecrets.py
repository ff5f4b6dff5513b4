"""The operator's Secret reader: ``get`` by name over its client (a ``SecretSource``).

The one way the operator reads a Secret: image signers' keys and pull secrets (through
the facts layer's cache, ``imageverdicts``), model and builder signers' keys
(``secretreading.key_values``, for ModelArtifact checks and the model-keys ConfigMap).
Errors name the Secret and an HTTP status or error type, never its data.
"""

from __future__ import annotations

from modelshield.controllers import writing
from modelshield.supplychain.images import secretreading


class KubeSecrets(secretreading.SecretSource):
    """A ``SecretSource`` over the operator's client: ``get`` by name, nothing else."""

    def __init__(self, kube: writing.Kube) -> None:
        self.kube = kube

    async def read(self, namespace: str, name: str) -> secretreading.SecretData | None:
        """The Secret's data, None when it does not exist; SecretReadError otherwise."""
        try:
            found = await self.kube.get("Secret", namespace, name)
        except writing.ApiException as error:
            # Only the status: an error body could echo more than the Secret's name.
            raise secretreading.SecretReadError(
                f"get Secret {namespace}/{name}: HTTP {error.status}"
            ) from None
        except Exception as error:  # noqa: BLE001 - connection errors, closed pool: fail closed
            raise secretreading.SecretReadError(
                f"get Secret {namespace}/{name}: {type(error).__name__}"
            ) from None
        return None if found is None else secretreading.data_of(found)
