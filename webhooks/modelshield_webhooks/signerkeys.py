"""``secretRef`` signers made inline: shared with the operator.

The code lives in ``modelshield.supplychain.images.signerkeys``; its names are kept here
so that the webhook's modules keep importing them from one place.
"""

from __future__ import annotations

from modelshield.supplychain.images import signerkeys as shared

Ref = shared.Ref
SignerKeys = shared.SignerKeys
inlined = shared.inlined
secret_refs = shared.secret_refs
