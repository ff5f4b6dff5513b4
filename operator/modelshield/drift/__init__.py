"""The drift monitor: compare what a model is asked with the data it was trained on.

Pure modules (no I/O): ``profiles`` (the reference profile and how it is built),
``layouts`` (the slot layout every histogram shares), ``statistics`` (drift scores from
binned counts), ``windows`` (fixed-size tumbling histogram accumulators), ``payloads``
(KServe CloudEvents and JSON batches to arrays), ``alarms`` (thresholds with hysteresis)
and ``config`` (the monitor's configuration model).

I/O lives in ``datasets`` (reading training data files), ``notifying`` (Kubernetes
Events), ``metrics`` (the Prometheus registry) and ``server`` (the aiohttp service).
"""
