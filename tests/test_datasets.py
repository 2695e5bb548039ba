"""Tests of the dataset contract, registry, splits, standardisation, generators and error paths."""
from __future__ import annotations

import dataclasses
import random
import sys
import types

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import LogisticRegression

import datasets
from bench._imports import WrongDatasetsPackage, check_datasets_package
from datasets import (
    SPLITS,
    DatasetError,
    DatasetFormatError,
    DatasetNotFound,
    DatasetSpec,
    ModalitySpec,
    MultimodalData,
    TaskSpec,
    UnknownDataset,
    dataset_entries,
    load_dataset,
    parse_name,
)
from datasets.embedded.synthetic_mvmt import TASK_VIEWS
from datasets.embedded.synthetic_pid import VARIANTS
from datasets.prepare import build_data
from datasets.splits import split_indices

# --------------------------------------------------------------------------------------------- spec


@pytest.mark.parametrize("kwargs", [
    dict(name="m", kind="text", shape=(3,)),            # unknown kind
    dict(name="m", kind="tabular", shape=()),            # empty shape
    dict(name="m", kind="tabular", shape=(0,)),          # non-positive size
    dict(name="m", kind="tabular", shape=(-2,)),
    dict(name="m", kind="tabular", shape=(2, 3)),        # a vector modality with 2 dims
    dict(name="m", kind="embedding", shape=(2, 3)),
    dict(name="m", kind="image2d", shape=(8, 8)),        # image without channel dim
    dict(name="m", kind="image2d", shape=(1, 8, 8, 8)),
])
def test_modality_spec_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError, match="modality 'm'"):
        ModalitySpec(**kwargs)


def test_modality_spec_accepts_valid_values() -> None:
    assert ModalitySpec("t", "tabular", (4,)).is_vector
    assert ModalitySpec("e", "embedding", (4,)).is_vector
    assert not ModalitySpec("i", "image2d", (1, 8, 8)).is_vector
    assert not ModalitySpec("v", "volume3d", (1, 4, 4, 4)).is_vector


@pytest.mark.parametrize("kwargs", [
    dict(name="t", kind="ordinal", num_classes=3),
    dict(name="t", kind="binary", num_classes=1),
    dict(name="t", kind="binary", num_classes=3),
    dict(name="t", kind="regression", num_classes=2),
    dict(name="t", kind="multiclass", num_classes=1),
    dict(name="t", kind="multilabel", num_classes=1),
    dict(name="t", kind="multiclass", num_classes=3, labels=("a", "b")),
    dict(name="t", kind="regression", num_classes=1, target_std=0.0),
    dict(name="t", kind="regression", num_classes=1, target_std=-1.0),
])
def test_task_spec_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError, match="task 't'"):
        TaskSpec(**kwargs)


def test_task_spec_accepts_valid_values() -> None:
    assert TaskSpec("b", "binary", 2, ("neg", "pos")).is_classification
    assert TaskSpec("m", "multiclass", 3).is_classification
    assert not TaskSpec("ml", "multilabel", 4).is_classification
    assert not TaskSpec("r", "regression", 1, target_mean=5.0, target_std=2.0).is_classification


def _mods(*names):
    return tuple(ModalitySpec(n, "tabular", (2,)) for n in names)


def _tasks(*names):
    return tuple(TaskSpec(n, "binary", 2) for n in names)


def test_dataset_spec_rejects_duplicates_and_empties() -> None:
    with pytest.raises(ValueError, match="duplicate modality"):
        DatasetSpec("d", _mods("a", "a"), _tasks("y"), "rule", "src")
    with pytest.raises(ValueError, match="duplicate task"):
        DatasetSpec("d", _mods("a", "b"), _tasks("y", "y"), "rule", "src")
    with pytest.raises(ValueError, match="at least one modality"):
        DatasetSpec("d", (), _tasks("y"), "rule", "src")
    with pytest.raises(ValueError, match="at least one task"):
        DatasetSpec("d", _mods("a"), (), "rule", "src")
    spec = DatasetSpec("d", _mods("a", "b"), _tasks("y", "z"), "rule", "src")
    assert spec.modality_names == ["a", "b"] and spec.task_names == ["y", "z"]
    assert spec.modality("b").name == "b" and spec.task("z").name == "z"
    with pytest.raises(KeyError):
        spec.modality("c")
    with pytest.raises(KeyError):
        spec.task("c")


# ----------------------------------------------------------------------------------------- registry

EXPECTED_EMBEDDED = {"wdbc", "digits-halves", "diabetes-views", "synthetic-mvmt"} | {
    f"synthetic-pid:{v}" for v in VARIANTS}


def _embedded_names() -> list[str]:
    """Embedded tabular/image datasets (segmentation ones are tested in test_segmentation.py)."""
    names = []
    for e in dataset_entries():
        if e.embedded and not e.segmentation:
            plain = [e.name] if not e.variants or e.default_variant is None else []   # e.g. synthetic-mvmt
            names += plain + [f"{e.name}:{v}" for v in e.variants]
    return sorted(names)


def test_registry_lists_the_embedded_and_external_datasets() -> None:
    names = _embedded_names()
    assert EXPECTED_EMBEDDED <= set(names)
    external = {e.name for e in dataset_entries() if not e.embedded}
    assert {"flare22", "amos22", "atlas23"} <= external
    assert not external & {n.partition(":")[0] for n in EXPECTED_EMBEDDED}


@pytest.mark.parametrize("name", _embedded_names())
def test_embedded_dataset_loads_and_matches_spec(name, load_data) -> None:
    data = load_data(name)
    assert isinstance(data, MultimodalData)
    assert data.validate() is data
    assert data.spec.name == name
    n = len(data)
    assert n > 0 and len(set(data.ids)) == n
    for m in data.spec.modalities:
        x = data.inputs[m.name]
        assert x.dtype == torch.float32 and tuple(x.shape) == (n, *m.shape)
        assert data.mask[m.name].dtype == torch.bool and tuple(data.mask[m.name].shape) == (n,)
        assert bool(torch.isfinite(x).all())
    for t in data.spec.tasks:
        y = data.targets[t.name]
        assert y.shape[0] == n and tuple(data.target_mask[t.name].shape) == (n,)
        if t.is_classification:
            assert y.dtype == torch.int64 and y.dim() == 1
            labelled = y[data.target_mask[t.name]]
            assert int(labelled.min()) >= 0 and int(labelled.max()) < t.num_classes
            assert len(torch.unique(labelled)) == t.num_classes  # every class occurs
        elif t.kind == "regression":
            assert y.dtype == torch.float32 and y.dim() == 1
    sizes = {s: len(data.splits[s]) for s in SPLITS}
    assert all(v > 0 for v in sizes.values()), sizes
    allidx = np.concatenate([data.splits[s] for s in SPLITS])
    assert len(allidx) == n and len(np.unique(allidx)) == n  # disjoint and covering
    assert set(allidx.tolist()) == set(range(n))
    for s in SPLITS:
        assert np.all(np.diff(data.splits[s]) > 0)  # sorted
    # roughly 60/20/20
    assert sizes["train"] / n == pytest.approx(0.6, abs=0.03)
    assert sizes["test"] / n == pytest.approx(0.2, abs=0.03)
    # a batch follows the contract
    b = data.batch(data.splits["val"][:5])
    assert b["id"] == [data.ids[i] for i in data.splits["val"][:5]]
    for m in data.spec.modalities:
        assert tuple(b["inputs"][m.name].shape) == (5, *m.shape)


def test_bare_name_uses_default_variant() -> None:
    entry, variant = parse_name("synthetic-pid")
    assert variant == entry.default_variant == "mixed"
    assert load_dataset("synthetic-pid").spec.name == "synthetic-pid:mixed"


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(UnknownDataset) as exc:
        load_dataset("no-such-dataset")
    msg = str(exc.value)
    assert "no-such-dataset" in msg
    for name in ("wdbc", "digits-halves", "diabetes-views", "synthetic-pid", "synthetic-mvmt", "flare22"):
        assert name in msg
    assert isinstance(exc.value, DatasetError)


def test_unknown_variant_lists_choices() -> None:
    with pytest.raises(UnknownDataset) as exc:
        load_dataset("synthetic-pid:nope")
    msg = str(exc.value)
    assert "nope" in msg and all(v in msg for v in VARIANTS)
    with pytest.raises(UnknownDataset, match="no variants"):
        load_dataset("wdbc:extra")


# ------------------------------------------------------------------------------------- determinism


def _assert_same_data(a: MultimodalData, b: MultimodalData) -> None:
    assert a.ids == b.ids and a.spec == b.spec
    for d in ("inputs", "mask", "targets", "target_mask"):
        da, db = getattr(a, d), getattr(b, d)
        assert da.keys() == db.keys()
        for k in da:
            assert torch.equal(da[k], db[k]), (d, k)
    for s in SPLITS:
        np.testing.assert_array_equal(a.splits[s], b.splits[s])
    assert a.extras.keys() == b.extras.keys()
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k])


@pytest.mark.parametrize("name", ["wdbc", "synthetic-pid:mixed", "synthetic-mvmt"])
def test_loading_twice_is_identical(name) -> None:
    _assert_same_data(load_dataset(name, split_seed=3), load_dataset(name, split_seed=3))


@pytest.mark.parametrize("name", ["wdbc", "digits-halves", "synthetic-mvmt"])
def test_split_seed_changes_split_and_only_split(name) -> None:
    a, b = load_dataset(name, split_seed=0), load_dataset(name, split_seed=1)
    assert not np.array_equal(a.splits["train"], b.splits["train"])
    assert not np.array_equal(a.splits["test"], b.splits["test"])
    assert a.ids == b.ids
    for t in a.spec.task_names:  # same samples, same labels: only the split moved
        assert torch.equal(a.targets[t], b.targets[t])
    if name != "wdbc":  # images are not standardised, so inputs are split-independent too
        for m in a.spec.modality_names:
            assert torch.equal(a.inputs[m], b.inputs[m])


def test_same_split_seed_same_split_regardless_of_global_rng() -> None:
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    a = load_dataset("wdbc", split_seed=5)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    _ = np.random.rand(17), torch.rand(17)
    b = load_dataset("wdbc", split_seed=5)
    _assert_same_data(a, b)
    # the split seed alone keys the split: 5 != 0
    c = load_dataset("wdbc", split_seed=0)
    assert not np.array_equal(a.splits["train"], c.splits["train"])


def test_split_indices_is_a_pure_function_of_its_arguments() -> None:
    y = np.repeat(np.arange(4), 25)
    np.random.seed(0)
    a = split_indices(100, 7, stratify=y)
    np.random.seed(123)
    torch.manual_seed(123)
    b = split_indices(100, 7, stratify=y)
    for s in SPLITS:
        np.testing.assert_array_equal(a[s], b[s])
    c = split_indices(100, 8, stratify=y)
    assert not np.array_equal(a["train"], c["train"])
    # stratified: every class keeps its 60/20/20 share
    for s, frac in zip(SPLITS, (0.6, 0.2, 0.2)):
        counts = np.bincount(y[a[s]], minlength=4)
        np.testing.assert_array_equal(counts, np.full(4, int(25 * frac)))


def test_split_indices_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError):
        split_indices(10, 0, fractions=(0.5, 0.3, 0.3))
    with pytest.raises(ValueError):
        split_indices(10, 0, fractions=(0.8, 0.2, 0.0))


# ------------------------------------------------------------------------------------ patient-safe


def _group_owner(groups: np.ndarray, splits: dict[str, np.ndarray]) -> None:
    owner: dict = {}
    for s in SPLITS:
        for g in np.unique(groups[splits[s]]):
            assert owner.setdefault(g, s) == s, f"group {g} in {owner[g]} and {s}"


def test_synthetic_mvmt_is_split_by_patient(load_data) -> None:
    data = load_data("synthetic-mvmt")
    assert data.groups is not None and len(data.groups) == len(data)
    _, counts = np.unique(data.groups, return_counts=True)
    assert np.all(counts == 2)
    _group_owner(data.groups, data.splits)
    # both samples of each patient are in the same split
    where = np.empty(len(data), dtype=object)
    for s in SPLITS:
        where[data.splits[s]] = s
    for g in np.unique(data.groups)[:50]:
        assert len(set(where[data.groups == g])) == 1


def test_split_indices_with_groups() -> None:
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, 400)  # uneven group sizes
    parts = split_indices(400, 3, groups=groups)
    allidx = np.concatenate([parts[s] for s in SPLITS])
    assert sorted(allidx.tolist()) == list(range(400))
    assert all(len(parts[s]) for s in SPLITS)
    _group_owner(groups, parts)
    assert len(parts["train"]) / 400 == pytest.approx(0.6, abs=0.06)
    assert len(parts["test"]) / 400 == pytest.approx(0.2, abs=0.06)
    again = split_indices(400, 3, groups=groups)
    other = split_indices(400, 4, groups=groups)
    for s in SPLITS:
        np.testing.assert_array_equal(parts[s], again[s])
    assert not np.array_equal(parts["train"], other["train"])
    # groups win over stratification: still patient-safe when a stratify array is given
    strat = rng.integers(0, 2, 400)
    _group_owner(groups, split_indices(400, 3, stratify=strat, groups=groups))
    # string patient ids work too
    _group_owner(groups.astype(str), split_indices(400, 3, groups=groups.astype(str)))


# ------------------------------------------------------------------------------ standardisation


def test_wdbc_standardised_with_training_statistics_only(load_data) -> None:
    data = load_data("wdbc")
    raw = load_breast_cancer()
    names = list(raw.feature_names)
    cols = {"mean": [i for i, f in enumerate(names) if f.startswith("mean ")],
            "se": [i for i, f in enumerate(names) if f.endswith(" error")],
            "worst": [i for i, f in enumerate(names) if f.startswith("worst ")]}
    train = data.splits["train"]
    for view, c in cols.items():
        x = data.inputs[view].numpy().astype(np.float64)
        np.testing.assert_allclose(x[train].mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(x[train].std(0), 1.0, atol=1e-3)
        for s in ("val", "test"):  # held-out splits are transformed with train stats, so not exactly 0/1
            assert np.abs(x[data.splits[s]].mean(0)).max() > 0.01, (view, s)
            assert np.abs(x[data.splits[s]].std(0) - 1).max() > 0.01, (view, s)
        # exactly (raw - train mean) / train std
        r = raw.data[:, c].astype(np.float32).astype(np.float64)
        expected = (r - r[train].mean(0)) / r[train].std(0)
        np.testing.assert_allclose(x, expected, rtol=1e-3, atol=1e-3)
    # malignant is the positive class (sklearn codes benign as 1)
    np.testing.assert_array_equal(data.targets["diagnosis"].numpy(), (raw.target == 0).astype(np.int64))


def test_diabetes_targets_in_original_units_with_train_scale(load_data) -> None:
    data = load_data("diabetes-views")
    raw = load_diabetes(scaled=False)
    y = data.targets["progression"].numpy()
    np.testing.assert_allclose(y, raw.target.astype(np.float32))
    task = data.spec.task("progression")
    train = data.splits["train"]
    assert task.target_mean == pytest.approx(float(y[train].mean()), rel=1e-5)
    assert task.target_std == pytest.approx(float(y[train].std()), rel=1e-5)
    assert task.target_mean != pytest.approx(float(y.mean()), rel=1e-6)  # train-only, not all data


def test_digits_halves_are_the_two_halves_in_unit_range(load_data) -> None:
    data = load_data("digits-halves")
    img = load_digits().images.astype(np.float32) / 16.0
    np.testing.assert_allclose(data.inputs["left"].numpy()[:, 0], img[..., :4])
    np.testing.assert_allclose(data.inputs["right"].numpy()[:, 0], img[..., 4:])


# ------------------------------------------------------------------------------------ synthetic-pid


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "mixed"])
def test_synthetic_pid_interaction_truth_pure_variants(variant, load_data) -> None:
    data = load_data(f"synthetic-pid:{variant}")
    kind = np.asarray(data.extras["interaction"])
    assert kind.shape == (len(data),)
    assert set(kind.tolist()) == {variant}
    assert data.spec.params["variant"] == variant


def test_synthetic_pid_mixed_has_every_interaction_type(load_data) -> None:
    kind = np.asarray(load_data("synthetic-pid:mixed").extras["interaction"])
    types_, counts = np.unique(kind, return_counts=True)
    assert set(types_.tolist()) == {"unique-m1", "unique-m2", "redundant", "synergy"}
    assert counts.min() > 0.15 * len(kind)


def _lr_test_acc(data: MultimodalData, modalities: list[str]) -> float:
    x = np.concatenate([data.inputs[m].numpy() for m in modalities], axis=1)
    y = data.targets["label"].numpy()
    tr, te = data.splits["train"], data.splits["test"]
    return LogisticRegression(max_iter=1000).fit(x[tr], y[tr]).score(x[te], y[te])


def test_synthetic_pid_synergy_single_modalities_are_uninformative(load_data) -> None:
    data = load_data("synthetic-pid:synergy")
    for m in data.spec.modality_names:
        assert _lr_test_acc(data, [m]) < 0.6, m
    # XOR of the latent signs is learnable from the product of the projections onto the planted directions
    x1, x2 = data.inputs["m1"].numpy(), data.inputs["m2"].numpy()
    y = data.targets["label"].numpy()
    tr, te = data.splits["train"], data.splits["test"]
    # recover each planted direction as the top principal axis of its modality
    u1 = np.linalg.svd(x1[tr], full_matrices=False)[2][0]
    u2 = np.linalg.svd(x2[tr], full_matrices=False)[2][0]
    feat = ((x1 @ u1) * (x2 @ u2))[:, None]
    assert LogisticRegression().fit(feat[tr], y[tr]).score(feat[te], y[te]) > 0.7


def test_synthetic_pid_unique_m1_only_m1_informs(load_data) -> None:
    data = load_data("synthetic-pid:unique-m1")
    assert _lr_test_acc(data, ["m1"]) > 0.8
    assert _lr_test_acc(data, ["m2"]) < 0.6


def test_synthetic_pid_redundant_every_modality_informs(load_data) -> None:
    data = load_data("synthetic-pid:redundant")
    for m in data.spec.modality_names:
        assert _lr_test_acc(data, [m]) > 0.75, m


def test_synthetic_pid_options() -> None:
    data = load_dataset("synthetic-pid:unique-m1", n=300, modalities=3, dim=5)
    assert len(data) == 300 and data.spec.modality_names == ["m1", "m2", "m3"]
    assert all(m.shape == (5,) for m in data.spec.modalities)
    with pytest.raises(ValueError):
        load_dataset("synthetic-pid:synergy", modalities=5)


# ------------------------------------------------------------------------------------ synthetic-mvmt


def test_synthetic_mvmt_masks_and_task_views(load_data) -> None:
    data = load_data("synthetic-mvmt")
    assert data.spec.params["task_views"] == TASK_VIEWS
    assert set(data.spec.params["task_views"]) == set(data.spec.task_names)
    tm = data.target_mask
    assert bool(tm["task_a"].all()) and bool(tm["task_b"].all())
    missing_same = int((~tm["same"]).sum())
    assert 0.08 * len(data) < missing_same < 0.25 * len(data)
    assert bool(data.mask["v1"].all()) and bool(data.mask["v2"].all())
    absent = ~data.mask["v3"]
    assert 0 < int(absent.sum()) < 0.15 * len(data)
    assert bool((data.inputs["v3"][absent] == 0).all())
    assert bool((data.inputs["v3"][~absent].flatten(1).abs().sum(1) > 0).all())
    # `same` is [a == b]
    a, b = data.targets["task_a"], data.targets["task_b"]
    assert torch.equal(data.targets["same"], (a == b).long())
    for v in data.spec.modality_names:
        assert data.extras[f"noise_{v}"].shape == (len(data),)


# -------------------------------------------------------------------------------- bad inputs


TOY = DatasetSpec("toy", (ModalitySpec("a", "tabular", (3,)), ModalitySpec("img", "image2d", (1, 2, 2))),
                  (TaskSpec("y", "multiclass", 3),), "random 60/20/20", "hand-made")
N = 30


def _toy_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs = {"a": rng.normal(size=(N, 3)).astype(np.float32), "img": rng.random((N, 1, 2, 2)).astype(np.float32)}
    targets = {"y": np.arange(N) % 3}
    ids = [f"case-{i}" for i in range(N)]
    return inputs, targets, ids


def test_toy_data_is_valid() -> None:
    inputs, targets, ids = _toy_arrays()
    data = build_data(TOY, inputs, targets, 0, ids=ids).validate()
    assert data.ids == ids and data.spec.modality_names == ["a", "img"]


@pytest.mark.parametrize("modality", ["a", "img"])
def test_nan_in_present_row_names_modality_and_sample(modality) -> None:
    inputs, targets, ids = _toy_arrays()
    inputs[modality][7].flat[1] = np.nan
    data = build_data(TOY, inputs, targets, 0, ids=ids)
    with pytest.raises(DatasetFormatError) as exc:
        data.validate()
    assert f"'{modality}'" in str(exc.value) and "'case-7'" in str(exc.value)
    inputs, targets, ids = _toy_arrays()
    inputs[modality][3].flat[0] = np.inf
    with pytest.raises(DatasetFormatError, match="case-3"):
        build_data(TOY, inputs, targets, 0, ids=ids).validate()


def test_nan_in_absent_row_is_zero_filled() -> None:
    inputs, targets, ids = _toy_arrays()
    inputs["a"][7] = np.nan
    inputs["img"][4] = np.nan
    mask = {"a": np.arange(N) != 7, "img": np.arange(N) != 4}
    data = build_data(TOY, inputs, targets, 0, ids=ids, mask=mask).validate()
    assert bool((data.inputs["a"][7] == 0).all()) and bool((data.inputs["img"][4] == 0).all())
    assert not bool(data.mask["a"][7]) and bool(data.mask["a"][4])
    assert all(bool(torch.isfinite(x).all()) for x in data.inputs.values())
    # the absent row does not enter the training statistics
    train = data.splits["train"]
    rows = train[train != 7]
    np.testing.assert_allclose(data.inputs["a"][rows].numpy().mean(0), 0.0, atol=1e-5)


def test_wrong_per_sample_shape_rejected() -> None:
    inputs, targets, ids = _toy_arrays()
    inputs["a"] = np.zeros((N, 4), np.float32)
    with pytest.raises(DatasetFormatError, match="'a'.*shape"):
        build_data(TOY, inputs, targets, 0, ids=ids).validate()
    inputs, targets, ids = _toy_arrays()
    inputs["img"] = np.zeros((N, 1, 2, 3), np.float32)
    with pytest.raises(DatasetFormatError, match="'img'"):
        build_data(TOY, inputs, targets, 0, ids=ids).validate()


def test_label_out_of_range_rejected_unless_masked() -> None:
    inputs, targets, ids = _toy_arrays()
    targets["y"] = targets["y"].copy()
    targets["y"][5] = 3
    with pytest.raises(DatasetFormatError, match="outside 0..2"):
        build_data(TOY, inputs, targets, 0, ids=ids).validate()
    targets["y"][5] = -1
    with pytest.raises(DatasetFormatError, match="outside"):
        build_data(TOY, inputs, targets, 0, ids=ids).validate()
    # an unlabelled row may carry anything
    data = build_data(TOY, inputs, targets, 0, ids=ids, target_mask={"y": np.arange(N) != 5}).validate()
    assert not bool(data.target_mask["y"][5])


def test_modality_missing_for_every_sample_rejected() -> None:
    inputs, targets, ids = _toy_arrays()
    with pytest.raises(DatasetFormatError, match="'img' is missing for every sample"):
        build_data(TOY, inputs, targets, 0, ids=ids, mask={"img": np.zeros(N, bool)}).validate()


def test_duplicate_ids_rejected() -> None:
    inputs, targets, ids = _toy_arrays()
    ids[3] = ids[4]
    with pytest.raises(DatasetFormatError, match="not unique"):
        build_data(TOY, inputs, targets, 0, ids=ids).validate()


def test_patient_in_two_splits_rejected() -> None:
    inputs, targets, ids = _toy_arrays()
    groups = np.arange(N) // 2
    good = build_data(TOY, inputs, targets, 0, ids=ids, groups=groups).validate()
    _group_owner(good.groups, good.splits)
    # a group id shared by a train and a test sample
    leaky = groups.copy()
    leaky[good.splits["test"][0]] = leaky[good.splits["train"][0]]
    bad = dataclasses.replace(good, groups=leaky)
    with pytest.raises(DatasetFormatError, match="patient"):
        bad.validate()


def test_sample_in_two_splits_rejected() -> None:
    inputs, targets, ids = _toy_arrays()
    good = build_data(TOY, inputs, targets, 0, ids=ids).validate()
    splits = dict(good.splits)
    splits["val"] = np.append(splits["val"], splits["train"][0])
    with pytest.raises(DatasetFormatError, match="both"):
        dataclasses.replace(good, splits=splits).validate()


@pytest.mark.parametrize("split", SPLITS)
def test_empty_split_rejected(split) -> None:
    inputs, targets, ids = _toy_arrays()
    good = build_data(TOY, inputs, targets, 0, ids=ids).validate()
    splits = dict(good.splits)
    splits[split] = np.array([], dtype=np.int64)
    with pytest.raises(DatasetFormatError, match=f"'{split}' is empty"):
        dataclasses.replace(good, splits=splits).validate()


def test_declared_modality_without_data_rejected() -> None:
    inputs, targets, ids = _toy_arrays()
    good = build_data(TOY, inputs, targets, 0, ids=ids)
    inputs_less = {k: v for k, v in good.inputs.items() if k != "img"}
    with pytest.raises(DatasetFormatError, match="'img'"):
        dataclasses.replace(good, inputs=inputs_less).validate()


REG_SPEC = DatasetSpec("toyreg", (ModalitySpec("a", "tabular", (3,)),), (TaskSpec("r", "regression", 1),),
                       "random", "hand-made")


def test_regression_nan_target_masked_is_fine() -> None:
    x = np.random.default_rng(0).normal(size=(N, 3)).astype(np.float32)
    y = np.linspace(10, 40, N)
    y[2] = np.nan
    data = build_data(REG_SPEC, {"a": x}, {"r": y}, 0, target_mask={"r": np.arange(N) != 2}).validate()
    task = data.spec.task("r")
    assert np.isfinite(task.target_mean) and task.target_std > 0


def test_regression_nan_target_labelled_is_a_format_error() -> None:
    x = np.random.default_rng(0).normal(size=(N, 3)).astype(np.float32)
    y = np.linspace(10, 40, N)
    y[split_indices(N, 0)["train"][0]] = np.nan  # a labelled training row (build_data splits the same way)
    with pytest.raises(DatasetFormatError, match="NaN/Inf regression targets"):
        build_data(REG_SPEC, {"a": x}, {"r": y}, 0).validate()


# ------------------------------------------------------------------------------------- external


def test_flare22_missing_names_folder_and_layout(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("BENCH_DATA_ROOT", raising=False)
    with pytest.raises(DatasetNotFound) as exc:
        load_dataset("flare22", data_root=str(tmp_path))
    msg = str(exc.value)
    assert str(tmp_path / "FLARE22") in msg and "imagesTr" in msg and "labelsTr" in msg
    entry, _ = parse_name("flare22")
    assert not entry.embedded and entry.check is not None
    with pytest.raises(DatasetNotFound) as exc2:
        entry.check(str(tmp_path))
    assert str(exc2.value) == msg


def test_flare22_data_root_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "envroot"))
    entry, _ = parse_name("flare22")
    with pytest.raises(DatasetNotFound, match="envroot"):
        entry.check(None)


def test_flare22_fake_layout_is_located(tmp_path) -> None:
    base = tmp_path / "FLARE22"
    (base / "imagesTr").mkdir(parents=True)
    (base / "labelsTr").mkdir()
    entry, _ = parse_name("flare22")
    (base / "imagesTr" / "FLARE22_Tr_0001_0000.nii.gz").touch()
    with pytest.raises(DatasetError, match="FLARE22_Tr_0001.nii.gz"):  # an image without its label is malformed
        entry.check(str(tmp_path))
    (base / "labelsTr" / "FLARE22_Tr_0001.nii.gz").touch()
    assert entry.check(str(tmp_path)) == base
    # found, but the files are empty: a format error naming the file, not "not found"
    with pytest.raises(DatasetError) as exc:
        load_dataset("flare22", data_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert not isinstance(exc.value, DatasetNotFound) and str(base) in str(exc.value)


# --------------------------------------------------------------------------------- HF shadowing guard


def test_datasets_package_guard(monkeypatch) -> None:
    assert datasets.BENCH_DATASETS_PACKAGE is True
    check_datasets_package()
    impostor = types.ModuleType("datasets")
    impostor.__file__ = "/site-packages/datasets/__init__.py"
    monkeypatch.setitem(sys.modules, "datasets", impostor)
    with pytest.raises(WrongDatasetsPackage, match="fresh virtual environment") as exc:
        check_datasets_package()
    assert "/site-packages/datasets/__init__.py" in str(exc.value)
    assert isinstance(exc.value, ImportError)


def test_grouped_split_with_few_patients_keeps_every_split_non_empty() -> None:
    groups = np.repeat(np.arange(4), 2)
    parts = split_indices(len(groups), 0, groups=groups)
    assert all(len(parts[s]) for s in ("train", "val", "test"))
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(8))


def test_missing_modality_array_is_a_format_error() -> None:
    with pytest.raises(DatasetFormatError, match="modality 'a' declared in the spec has no data"):
        build_data(REG_SPEC, {}, {"r": np.linspace(10, 40, N)}, 0)
