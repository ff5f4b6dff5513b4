"""The drift monitor: compare what a model is asked with the data it was trained on.

Pure modules (no I/O): ``profiles`` (the reference profile and how it is built),
``profiledocuments`` (its JSON document), ``rawvalues`` (CSV and JSON values as numbers
and categories), ``layouts`` (the slot layout every histogram shares), ``statistics``
(drift scores from binned counts), ``windows`` (fixed-size tumbling histogram
accumulators), ``envelopes`` (CloudEvents binary and structured modes), ``payloads``
(v1/v2 inference bodies to arrays), ``alarms`` (thresholds with hysteresis) and
``monitoring`` (windows and alarms of the request and response streams).

I/O lives in ``config`` (the monitor's configuration, read from a file and the
environment), ``datasets`` (reading training data files, profile files), ``notifying``
(Kubernetes Events), ``metrics`` (the Prometheus registry) and ``server`` (the aiohttp
service).
"""
