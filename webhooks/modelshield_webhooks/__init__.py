"""The admission server: validating and mutating webhooks that enforce ModelSecurityPolicies.

Pure modules (no I/O): ``reviews`` (AdmissionReview v1 parsing), ``responses`` (building
the answer), ``resources`` (semantic checks of modelshield's own custom resources),
``configurations`` (the webhook configuration objects), ``verifiers`` (the image verifier
interface the server depends on).

Request handling: ``contexts`` (what a handler needs), ``facts`` (gathering image facts
under a deadline), ``validating`` and ``mutating`` (the handlers), ``metrics``.

I/O: ``connections`` (reaching the API server), ``watching`` (list+watch with resync),
``caches`` (the watch-backed state the handlers read, so that no request calls the API)
``server`` (the aiohttp HTTPS application, certificate reloading) and ``eventloops``
(uvloop or the standard loop under it).
"""
