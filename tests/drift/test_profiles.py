"""Building, writing and reading reference profiles; the `drift profile` command."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from modelshield.cli import main as cli
from modelshield.drift import datasets, layouts, profiledocuments, profiles, rawvalues


def test_numeric_bins_are_quantiles_and_count_every_value() -> None:
    values = np.arange(1000, dtype=np.float64)
    feature = profiles.build_numeric("x", np.append(values, [np.nan, np.inf]), bins=10)
    assert len(feature.edges) == 11
    assert feature.minimum == 0.0
    assert feature.maximum == 999.0
    assert sum(feature.counts) == 1000
    assert max(feature.counts) - min(feature.counts) <= 1
    assert feature.missing == 2


def test_the_maximum_falls_in_the_last_bin_and_out_of_range_values_outside() -> None:
    feature = profiles.build_numeric("x", np.array([0.0, 1.0, 2.0, 3.0]), bins=2)
    upper = profiles.upper_edges(feature.edges)
    slots = profiles.bin_numeric(upper, np.array([-1.0, 0.0, 1.49, 1.5, 3.0, 3.01, np.nan]))
    assert slots.tolist() == [0, 1, 1, 2, 2, 3, 3]


def test_a_constant_feature_gets_one_bin() -> None:
    feature = profiles.build_numeric("x", np.full(10, 4.0))
    assert feature.edges == (4.0, 4.0)
    assert feature.counts == (10,)


def test_kinds_are_inferred_and_can_be_forced() -> None:
    columns: dict[str, list[object]] = {
        "n": ["1", "2.5", ""],
        "c": ["a", "b", "a"],
        "code": [1, 2, 1],
    }
    profile = profiles.build(columns, categorical=["code"])
    kinds = {f.name: type(f).__name__ for f in profile.features}
    assert kinds == {"n": "NumericFeature", "c": "CategoricalFeature", "code": "CategoricalFeature"}
    assert profile.feature("n").missing == 1
    code = profile.feature("code")
    assert isinstance(code, profiles.CategoricalFeature)
    assert code.categories == ("1", "2")


def test_the_long_tail_of_categories_is_other() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c", "d", None]
    feature = profiles.build_categorical("c", values, max_categories=2)
    assert feature.categories == ("a", "b")
    assert feature.other == 2
    assert feature.missing == 1


def test_category_keys_agree_between_csv_and_json() -> None:
    assert rawvalues.category_key("3") == rawvalues.category_key(3) == rawvalues.category_key(3.0)
    assert rawvalues.category_key(True) == "true"
    assert rawvalues.category_key("") is None
    assert rawvalues.category_key(float("nan")) is None


def test_document_round_trip() -> None:
    profile = profiles.build(
        {"x": [0.5, 1.5, 2.5, None], "c": ["a", "b", "a", "a"]}, source="t.csv"
    )
    document = json.loads(json.dumps(profiledocuments.to_document(profile)))
    assert document["version"] == profiledocuments.PROFILE_VERSION
    assert profiledocuments.from_document(document) == profile


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=3), "version: this monitor reads profile versions 1, 2"),
        (
            lambda d: d["features"][0].update(counts=[1]),
            r"features\[0\]: 'edges' must have one more",
        ),
        (
            lambda d: d["features"][0].update(edges=[3.0, 2.0, 1.0]),
            r"features\[0\].edges: must not",
        ),
        (lambda d: d["features"][1].update(type="text"), r"features\[1\].type: expected"),
        (lambda d: d["features"].append(d["features"][0]), "duplicate names x"),
        (lambda d: d["features"][1]["categories"].update(a=-1), r"features\[1\].categories.a"),
    ],
)
def test_broken_documents_are_reported_with_their_path(mutate: object, message: str) -> None:
    profile = profiles.build({"x": [0.0, 1.0, 2.0], "c": ["a", "b", "a"]}, bins=2)
    document = profiledocuments.to_document(profile)
    assert callable(mutate)
    mutate(document)
    with pytest.raises(profiles.ProfileError, match=message):
        profiledocuments.from_document(document)


def test_a_layout_names_the_features_the_profile_lacks() -> None:
    profile = profiles.build({"x": [0.0, 1.0], "c": ["a", "b"]})
    with pytest.raises(profiles.ProfileError, match=r"'y' is not in the profile .*x, c"):
        layouts.build(profile, ["x", "y"])


def test_csv_and_jsonl_give_the_same_profile(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(0)
    xs = rng.normal(0, 1, 500).round(6).tolist()
    cs = [str(c) for c in rng.choice(["a", "b"], 500)]
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("x,c\n" + "".join(f"{x!r},{c}\n" for x, c in zip(xs, cs, strict=True)))
    jsonl_path = tmp_path / "train.jsonl"
    jsonl_path.write_text(
        "".join(json.dumps({"x": x, "c": c}) + "\n" for x, c in zip(xs, cs, strict=True))
    )
    from_csv = profiles.build(datasets.read(csv_path))
    from_jsonl = profiles.build(datasets.read(jsonl_path))
    assert from_csv.features == from_jsonl.features


def test_parquet(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "train.parquet"
    if importlib.util.find_spec("pyarrow") is None:
        path.write_bytes(b"PAR1")
        with pytest.raises(datasets.DatasetError, match="needs the optional package pyarrow"):
            datasets.read(path)
        return
    import pyarrow as pa  # type: ignore[import-not-found]  # optional
    import pyarrow.parquet as pq  # type: ignore[import-not-found]

    pq.write_table(pa.table({"x": [1.0, 2.0, None], "c": ["a", "b", "a"]}), path)
    profile = profiles.build(datasets.read(path))
    assert profile.feature("x").missing == 1


def test_unreadable_data_is_reported(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    with pytest.raises(datasets.DatasetError, match=r"bad\.csv:3: 1 cells"):
        datasets.read(bad)
    with pytest.raises(datasets.DatasetError, match="unknown data format"):
        datasets.read(tmp_path / "data.xlsx")


def test_profile_command(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "train.csv"
    data.write_text(
        "age,country,income\n"
        + "".join(f"{20 + i % 50},{'DE' if i % 3 else 'FR'},{i}\n" for i in range(300))
    )
    out = tmp_path / "profile.json"
    code = cli.main(
        [
            "drift",
            "profile",
            str(data),
            "--features",
            "age,country",
            "--bins",
            "5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "age (numeric), country (categorical)" in capsys.readouterr().out
    profile = datasets.read_profile(out)
    assert profile.names == ("age", "country")
    age = profile.feature("age")
    assert isinstance(age, profiles.NumericFeature)
    assert len(age.counts) == 5


def test_profile_command_names_missing_columns(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    code = cli.main(
        ["drift", "profile", str(data), "--features", "a,zzz", "--out", str(tmp_path / "p.json")]
    )
    assert code == 2
    assert "features not in the data: zzz (columns: a, b)" in capsys.readouterr().err
