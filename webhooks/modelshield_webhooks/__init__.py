"""The admission server: validating and mutating webhooks that enforce ModelSecurityPolicies.

Pure modules (no I/O): ``reviews`` (AdmissionReview v1 parsing), ``responses`` (building
the answer), ``resources`` (semantic checks of modelshield's own custom resources),
``configurations`` (the webhook configuration objects).

Request handling: ``contexts`` (what a handler needs), ``reviewfacts`` (one review's facts:
cached image verdicts at once, the rest gathered under the deadline by the facts layer,
``modelshield.supplychain.images.gathering``), ``validating`` and ``mutating`` (the
handlers), ``metrics``.

I/O: ``connections`` (reaching the API server), ``apisecrets`` (Secrets read by name, the
webhook's ``SecretSource``), ``watching`` (list+watch with resync),
``caches`` (the watch-backed state the handlers read, so that no request calls the API)
``server`` (the aiohttp HTTPS application, certificate reloading) and ``eventloops``
(uvloop or the standard loop under it).
"""
