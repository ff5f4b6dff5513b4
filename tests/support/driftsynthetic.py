"""Synthetic training data and traffic with known shifts, and recorded-shape KServe payloads."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelshield.drift import config, monitoring, payloads, profiles

NUMERIC = tuple(f"x{i}" for i in range(6))
CATEGORIES = ("red", "green", "blue", "amber")
WEIGHTS = (0.4, 0.3, 0.2, 0.1)
COLUMNS = (*NUMERIC, "colour")


def training_columns(rows: int = 20_000, seed: int = 0) -> dict[str, list[Any]]:
    """Six standard normal features and one four-valued category."""
    rng = np.random.default_rng(seed)
    columns: dict[str, list[Any]] = {name: rng.normal(0, 1, rows).tolist() for name in NUMERIC}
    columns["colour"] = [str(c) for c in rng.choice(CATEGORIES, rows, p=WEIGHTS)]
    return columns


def profile() -> profiles.Profile:
    """The reference profile of training_columns()."""
    return profiles.build(training_columns())


def rows(
    count: int,
    rng: np.random.Generator,
    *,
    shift: dict[str, float] | None = None,
    scale: dict[str, float] | None = None,
    missing: dict[str, float] | None = None,
    categories: tuple[str, ...] = CATEGORIES,
    weights: tuple[float, ...] = WEIGHTS,
) -> list[list[Any]]:
    """Rows in COLUMNS order, optionally shifted, scaled, with missing values or categories."""
    shift, scale, missing = shift or {}, scale or {}, missing or {}
    numbers = np.column_stack(
        [rng.normal(shift.get(name, 0.0), scale.get(name, 1.0), count) for name in NUMERIC]
    )
    colours = rng.choice(categories, count, p=weights)
    out: list[list[Any]] = []
    for i in range(count):
        row: list[Any] = [float(v) for v in numbers[i]]
        row.append(str(colours[i]))
        out.append(row)
    for name, rate in missing.items():
        position = COLUMNS.index(name)
        for row in out:
            if rng.random() < rate:
                row[position] = None
    return out


def batch(row_list: list[list[Any]], layout: Any) -> payloads.Batch:
    """Rows through the payload parser, as a plain JSON batch."""
    result = payloads.to_batch(payloads.Event("request", {"instances": row_list}), layout)
    return result


def monitor(**settings: Any) -> monitoring.Monitor:
    """A monitor of the synthetic profile."""
    return monitoring.Monitor(config.MonitorConfig(profile="unused", **settings), profile())


def body(row_list: list[list[Any]]) -> bytes:
    """A v1 request body."""
    return json.dumps({"instances": row_list}).encode()


# Recorded shapes of what the KServe payload logger posts (sklearn iris, v1 and v2).
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_REQUEST_V1 = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
IRIS_RESPONSE_V1 = {"predictions": [1, 1]}
IRIS_REQUEST_V2 = {
    "id": "823248cc-d770-4a51-9606-16803395569c",
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6],
        }
    ],
}
IRIS_RESPONSE_V2 = {
    "model_name": "sklearn-v2-iris",
    "model_version": None,
    "id": "823248cc-d770-4a51-9606-16803395569c",
    "parameters": None,
    "outputs": [
        {"name": "output-0", "shape": [2], "datatype": "INT64", "parameters": None, "data": [1, 1]}
    ],
}


def binary_headers(
    kind: str, event_id: str = "0009174a-24a8-4603-b098-09c8799950e9"
) -> dict[str, str]:
    """The headers of a binary-mode CloudEvent from the KServe logger (kind: request|response)."""
    return {
        "Ce-Id": event_id,
        "Ce-Specversion": "1.0",
        "Ce-Source": "http://localhost:9081/",
        "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
        "Ce-Time": "2021-04-10T00:23:26.080736102Z",
        "Ce-Inferenceservicename": "sklearn-iris",
        "Ce-Namespace": "default",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "",
        "Content-Type": "application/json",
    }


def structured(kind: str, data: object) -> bytes:
    """A structured-mode CloudEvent (Content-Type application/cloudevents+json)."""
    return json.dumps(
        {
            "specversion": "1.0",
            "type": f"org.kubeflow.serving.inference.{kind}",
            "source": "http://localhost:9081/",
            "id": "0009174a-24a8-4603-b098-09c8799950e9",
            "time": "2021-04-10T00:23:26.080736102Z",
            "datacontenttype": "application/json",
            "inferenceservicename": "sklearn-iris",
            "namespace": "default",
            "data": data,
        }
    ).encode()


def iris_profile() -> profiles.Profile:
    """A profile of iris-like data with the predicted class as a categorical output."""
    rng = np.random.default_rng(5)
    columns: dict[str, list[Any]] = {
        name: rng.normal(centre, 0.5, 3000).tolist()
        for name, centre in zip(IRIS_FEATURES, (5.8, 3.0, 3.7, 1.2), strict=True)
    }
    columns["prediction"] = [int(v) for v in rng.integers(0, 3, 3000)]
    return profiles.build(columns, categorical=["prediction"])
