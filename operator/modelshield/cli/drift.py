"""``modelshield drift profile`` and ``modelshield drift-monitor``: build a reference profile, run a monitor."""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Any

log = logging.getLogger("modelshield.drift")

# The drift modules (numpy, scipy, aiohttp) are imported by the handlers, not here: every
# other `modelshield` command would otherwise pay for them at start-up.
CONFIG_ENV = "MODELSHIELD_DRIFT_CONFIG"
DEFAULT_WINDOW = 1000
"""The monitor's (and the policy's) default window."""
DEFAULT_LEAST_EXPECTED = 10.0
"""The monitor's default ``leastExpected`` (``modelshield.drift.binmerging``)."""


def _names(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _run_profile(arguments: argparse.Namespace) -> int:
    import dataclasses

    from modelshield.drift import binmerging, calibration, datasets, missingshare, profiles

    data = pathlib.Path(arguments.data)
    limits: dict[str, Any] = {}
    if arguments.bins is not None:
        limits["bins"] = arguments.bins
    if arguments.max_categories is not None:
        limits["max_categories"] = arguments.max_categories
    try:
        columns = datasets.read(data)
        profile = profiles.build(
            columns,
            _names(arguments.features),
            categorical=_names(arguments.categorical),
            source=data.name,
            **limits,
        )
    except (datasets.DatasetError, profiles.ProfileError) as error:
        print(f"modelshield drift profile: {error}", file=sys.stderr)
        return 2
    rate = arguments.false_alarm_rate
    if not 0 < rate < 0.5:
        print("modelshield drift profile: --false-alarm-rate must be in (0, 0.5)", file=sys.stderr)
        return 2
    if arguments.least_expected < 0:
        print("modelshield drift profile: --least-expected must be at least 0", file=sys.stderr)
        return 2
    sizes = sorted(set(arguments.window or [DEFAULT_WINDOW]))
    if any(size < 1 for size in sizes):
        print("modelshield drift profile: --window must be at least 1", file=sys.stderr)
        return 2
    if not arguments.no_calibration:
        # The smallest tail any monitor of this profile needs at this rate: every feature
        # watched (requests and responses together), KS and Wasserstein giving a tenth of
        # each feature's share to the missing-share test.
        tail = missingshare.smallest_tail(rate, len(profile.features))
        stored = tuple(
            calibration.store(profile, size, tail, least_expected=arguments.least_expected)
            for size in sizes
        )
        profile = dataclasses.replace(profile, calibrations=stored)
    out = pathlib.Path(arguments.out)
    datasets.write_profile(profile, out)
    if not arguments.no_outliers:
        categorical = [
            f.name for f in profile.features if not isinstance(f, profiles.NumericFeature)
        ]
        outliers = _add_outlier_model(
            out, columns, profile.names, categorical, arguments.near_duplicate_radius
        )
        if outliers is not None:
            print(f"modelshield drift profile: {outliers}", file=sys.stderr)
            return 2
    kinds = ", ".join(
        f"{feature.name} ({'numeric' if isinstance(feature, profiles.NumericFeature) else 'categorical'})"
        for feature in profile.features
    )
    print(f"wrote {out}: {profile.rows} rows, {len(profile.features)} features: {kinds}")
    if profile.calibrations:
        print(
            f"calibrated for windows of {', '.join(map(str, sizes))} rows at false-alarm "
            f"rates down to {rate:g} per window"
        )
        least = arguments.least_expected
        for size in sizes:
            merged = binmerging.merged_names(profile, binmerging.for_window(profile, size, least))
            if merged:
                print(
                    f"  windows of {size}: thin bins merged to at least {least:g} expected "
                    f"rows in {len(merged)} features ({', '.join(merged)})"
                )
    return 0


def _add_outlier_model(
    out: pathlib.Path,
    columns: dict[str, Any],
    names: tuple[str, ...],
    categorical: list[str],
    near_duplicates: bool,
) -> str | None:
    """Store the guard's outlier model (issue 15) in the profile file; the problem if not."""
    import json

    from modelshield.guard import outliermodel

    try:
        fitted = outliermodel.build(columns, names, categorical, near_duplicates=near_duplicates)
    except outliermodel.OutlierModelError as error:
        return f"outlier model: {error} (--no-outliers skips it)"
    document = json.loads(out.read_text())
    document["outliers"] = outliermodel.to_document(fitted)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"outlier model: {len(fitted.fitted.varying)} features in the Mahalanobis score, "
        f"{fitted.held_out_excess.size} held-out rows for calibration"
    )
    return None


def _run_monitor(arguments: argparse.Namespace) -> int:
    from aiohttp import web

    from modelshield.drift import config, datasets, monitoring, notifying, profiles, server

    logging.basicConfig(
        level=getattr(logging, arguments.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = config.load(pathlib.Path(arguments.config) if arguments.config else None)
        if arguments.port is not None:
            settings = settings.model_copy(update={"port": arguments.port})
        if arguments.host is not None:
            settings = settings.model_copy(update={"host": arguments.host})
        profile = datasets.read_profile(pathlib.Path(settings.profile))
        monitor = monitoring.Monitor(settings, profile)
    except (config.ConfigError, profiles.ProfileError) as error:
        print(f"modelshield drift-monitor: {error}", file=sys.stderr)
        return 2
    sink = notifying.EventSink.in_cluster(settings.workload)
    for stream, layout in monitor.layouts_by_stream.items():
        log.info(
            "watching %s features %s with %s over windows of %d rows (null tables %s)",
            stream,
            ", ".join(layout.names),
            settings.statistic.value,
            settings.window,
            monitor.null_tables[stream],
        )
    if monitor.least_expected > 0:
        log.info(
            "bins merged to at least %g expected rows of a window: %s",
            monitor.least_expected,
            ", ".join(monitor.merged) if monitor.merged else "none needed",
        )
    log.info(
        "kubernetes events: %s",
        f"on {settings.workload.kind}/{settings.workload.name}"
        if sink and settings.workload
        else "off (not in a cluster, or no workload configured)",
    )
    service = server.Service(settings, monitor, sink)
    log.info("serving on %s:%d", settings.host, settings.port)
    web.run_app(
        server.build_app(service),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``drift`` (with ``profile``) and ``drift-monitor``."""
    drift = subparsers.add_parser("drift", help="drift monitoring tools")
    actions = drift.add_subparsers(dest="action", required=True, metavar="ACTION")
    profile = actions.add_parser(
        "profile", help="build a reference profile from training or validation data"
    )
    profile.add_argument("data", help="data file: .csv (with a header), .jsonl or .parquet")
    profile.add_argument("--features", help="comma-separated columns to profile (default: all)")
    profile.add_argument(
        "--categorical", help="comma-separated columns to treat as categorical even if numeric"
    )
    profile.add_argument("--bins", type=int, help="quantile bins per numeric feature (default 10)")
    profile.add_argument(
        "--max-categories",
        type=int,
        help="categories kept per feature, the rest count as 'other' (default 50)",
    )
    profile.add_argument("--out", required=True, help="where to write the profile JSON")
    profile.add_argument(
        "--window",
        type=int,
        action="append",
        help="window size (rows) to calibrate for, as the monitor's `window`; repeatable "
        f"(default {DEFAULT_WINDOW})",
    )
    profile.add_argument(
        "--false-alarm-rate",
        type=float,
        default=0.01,
        help="smallest declared false-alarm rate to calibrate for (default 0.01)",
    )
    profile.add_argument(
        "--least-expected",
        type=float,
        default=DEFAULT_LEAST_EXPECTED,
        help="calibrate on bins merged until each expects this many rows of the window, as "
        f"the monitor's `leastExpected` (default {DEFAULT_LEAST_EXPECTED:g}; 0: no merge)",
    )
    profile.add_argument(
        "--no-calibration",
        action="store_true",
        help="store no calibration (monitors with falseAlarmRate then calibrate at start)",
    )
    profile.add_argument(
        "--no-outliers",
        action="store_true",
        help="store no outlier model (the guard's api.outliers and api.probing need one)",
    )
    profile.add_argument(
        "--near-duplicate-radius",
        action="store_true",
        help="store PRADA's near-duplicate radius: the guard's distance test then leaves out "
        "up to 20 near copies of each earlier query (fewer false alarms on clients that "
        "resend real rows with noise; attackers probing many seeds with small steps are "
        "missed more often: docs/runtime-defences.md). Default: every query tested",
    )
    profile.set_defaults(handler=_run_profile)

    monitor = subparsers.add_parser(
        "drift-monitor", help="run a drift monitor (KServe CloudEvents in, Prometheus metrics out)"
    )
    monitor.add_argument("--config", help=f"monitor configuration file (default: ${CONFIG_ENV})")
    monitor.add_argument("--port", type=int, help="port to serve on (overrides the file)")
    monitor.add_argument("--host", help="address to serve on (overrides the file)")
    monitor.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    monitor.set_defaults(handler=_run_monitor)
