"""bench verify: claims files, verdict rules, Holm across a file's claims, reports."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.catalogue import build_catalogue
from bench.cli import main
from bench.config import ConfigError
from bench.record import RunRecord
from bench.store import RunStore, default_url
from bench.verify import load_claims
from results import stats as st
from results.claims import (
    INCONCLUSIVE,
    NOT_CHECKABLE,
    REFUTED,
    SUPPORTED,
    Check,
    ClaimReport,
    Report,
    combine,
    evaluate,
    render,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "claims"


# ------------------------------------------------------------------------------- verdict rules
@pytest.mark.parametrize("adv, lo, hi, p, size, expected", [
    (0.03, 0.01, 0.05, 0.001, None, SUPPORTED),        # significant, CI above 0
    (0.03, 0.025, 0.05, 0.001, 0.02, SUPPORTED),       # and above the claimed size
    (0.03, 0.01, 0.05, 0.001, 0.02, INCONCLUSIVE),     # the estimate reaches the size, the CI does not
    (0.03, 0.01, 0.05, 0.001, 0.10, REFUTED),          # real effect, but the claimed size is above the CI
    (-0.05, -0.08, -0.02, 0.001, None, REFUTED),       # significant the other way
    (-0.05, -0.08, -0.02, 0.001, 0.05, REFUTED),
    (0.01, -0.01, 0.03, 0.30, None, INCONCLUSIVE),     # not significant
    (-0.01, -0.03, 0.01, 0.30, None, INCONCLUSIVE),    # wrong way but not significant
    (0.03, 0.01, 0.05, 0.001, 0.04, INCONCLUSIVE),     # significant, below the size, size inside the CI
    (0.03, -0.001, 0.05, 0.04, None, INCONCLUSIVE),    # p < alpha but the CI touches 0: both are needed
    (-0.03, -0.05, 0.001, 0.04, None, INCONCLUSIVE),   # the same the other way: refuting needs the CI too
    (0.01, -0.01, 0.03, 0.30, 0.05, INCONCLUSIVE),     # the size is above the CI but not significantly (Holm)
    (0.01, -0.01, 0.03, 0.001, 0.05, REFUTED),         # ... and significantly
    (float("nan"), float("nan"), float("nan"), float("nan"), None, INCONCLUSIVE),
])
def test_verdict_rules(adv, lo, hi, p, size, expected):
    v, why = verdict(adv, lo, hi, p, 0.05, size)
    assert v == expected, why
    assert why


def test_verdict_alpha_is_the_threshold():
    assert verdict(0.03, 0.01, 0.05, 0.049, 0.05)[0] == SUPPORTED
    assert verdict(0.03, 0.01, 0.05, 0.05, 0.05)[0] == INCONCLUSIVE


def test_one_seed_can_support_nothing():
    v, why = verdict(0.3, 0.2, 0.4, 1e-9, 0.05, seeds=(1, 1))
    assert (v, why) == (INCONCLUSIVE, "inconclusive: 1 seed per side (at least 3 needed)")
    v, why = verdict(-0.3, -0.4, -0.2, 1e-9, 0.05, seeds=(3, 2))
    assert v == INCONCLUSIVE and "2 for the baseline (at least 3 needed)" in why
    assert verdict(0.3, 0.2, 0.4, 1e-9, 0.05, seeds=(2, 2), min_seeds=2)[0] == SUPPORTED
    why = verdict(0.01, -0.01, 0.03, 0.3, 0.05, detectable=0.025)[1]
    assert "smaller than 0.025 could not have been detected (80% power)" in why


def test_every_dataset_combination():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([SUPPORTED, REFUTED, NOT_CHECKABLE]) == REFUTED      # one counterexample is enough
    assert combine([SUPPORTED, NOT_CHECKABLE]) == NOT_CHECKABLE         # cannot hold everywhere unchecked
    assert combine([]) == NOT_CHECKABLE


# ------------------------------------------------------------------------------- planted store
def _put(store: RunStore, key: str, method: str, dataset: str, correct: np.ndarray, seed: int = 0) -> None:
    metrics = {"test": {"label": {"accuracy": float(np.mean(correct))}}}
    rec = RunRecord(key=key, method=method, dataset=dataset, seed=seed, split_seed=0, preset="tiny", code_version="x",
                    config={}, status="ok", metrics=metrics, config_id=f"cfg-{method}-{dataset}",
                    request_id=f"req-{key}", label=method, label_fields={}, created_at="2026-01-01",
                    catalogue=build_catalogue({"label": "binary"}, metrics))
    n = len(correct)
    cases = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "target": np.ones(n), "pred": correct.astype(float),
                          "correct": correct.astype(float), "loss": 1.0 - correct, "abs_error": np.nan,
                          "task": "label"})
    store.put(rec, cases=cases)


def _pair(n10: int, n01: int, both: int = 60, neither: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per-case correctness of two methods with the given discordant counts (McNemar's n10, n01)."""
    a = np.array([1] * n10 + [0] * n01 + [1] * both + [0] * neither)
    b = np.array([0] * n10 + [1] * n01 + [1] * both + [0] * neither)
    return a, b


SEEDS = 3
PLANTED = {"ds-good": (40, 2), "ds-bad": (2, 40), "ds-tie": (10, 10), "ds-weak": (9, 0)}


def _seeded(n10: int, n01: int, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed, the pair with 3 cases of each side flipped at random (each seed its own model)."""
    out = []
    for _ in range(SEEDS):
        a, b = _pair(n10, n01)
        for x in (a, b):
            i = rng.choice(len(x), 3, replace=False)
            x[i] = 1 - x[i]
        out.append((a, b))
    return out


@pytest.fixture
def planted(tmp_path):
    """Three seeds per side. ds-good: A beats B by far; ds-bad: A loses by far; ds-tie: no
    difference; ds-weak: A ahead by about 7 points (p ~ 0.035: significant alone, not after Holm
    with more)."""
    store = RunStore(default_url(tmp_path))
    for ds, (n10, n01) in PLANTED.items():
        for seed, (a, b) in enumerate(_seeded(n10, n01, np.random.default_rng(0))):
            _put(store, f"A-{ds}-{seed}", "A", ds, a, seed)
            _put(store, f"B-{ds}-{seed}", "B", ds, b, seed)
    return store


def _claim(cid: str, datasets: list[str], size=None, direction="better") -> ClaimReport:
    return ClaimReport(cid, f"A beats B on {datasets}", "A", "B", "accuracy", True, direction, size,
                       checks=[Check(cid, d, "accuracy", None, [f"A-{d}-{s}" for s in range(SEEDS)],
                                     [f"B-{d}-{s}" for s in range(SEEDS)]) for d in datasets])


def _independent(ds: str):
    """The comparison recomputed from the planted arrays: per-seed accuracies and the case covariance
    of the plain per-case correctness (np.cov), through results.inference.compare."""
    from results.inference import compare

    pairs = _seeded(*PLANTED[ds], np.random.default_rng(0))
    x = np.vstack([a for a, _ in pairs] + [b for _, b in pairs]).astype(float)
    cov = np.cov(x) / x.shape[1]
    return compare(x[:SEEDS].mean(1), x[SEEDS:].mean(1), range(SEEDS), range(SEEDS), cov)


def test_planted_verdicts(planted):
    claims = [_claim("good", ["ds-good"]), _claim("bad", ["ds-bad"]), _claim("tie", ["ds-tie"]),
              _claim("good-big", ["ds-good"], size=0.5), _claim("bad-worse", ["ds-bad"], direction="worse")]
    n = evaluate(claims, planted, 0.05)
    assert n == 4    # distinct hypotheses: bad and bad-worse test the same one; good-big has its own null (0.5)
    v = {c.id: c.verdict for c in claims}
    assert v == {"good": SUPPORTED, "bad": REFUTED, "tie": INCONCLUSIVE, "good-big": REFUTED, "bad-worse": SUPPORTED}
    good = claims[0].checks[0]
    assert good.task == "label" and good.result.test == "paired seeds + cases"
    assert (good.seeds_method, good.seeds_baseline, good.result.extra["cases"]) == (3, 3, 132)
    ref = _independent("ds-good")
    assert good.result.effect == pytest.approx(ref.effect) and good.result.pvalue == pytest.approx(ref.pvalue)
    assert (good.result.ci_low, good.result.ci_high) == (pytest.approx(ref.ci_low), pytest.approx(ref.ci_high))
    assert good.mean_method - good.mean_baseline == pytest.approx(ref.effect)
    big = claims[3].checks[0]   # tested against the claimed 0.5: p of (effect - 0.5) / SE
    assert big.p_claim < 1e-3 and big.adv_high < 0.5 and math.isfinite(big.detectable)


def test_holm_across_the_claims_of_a_file(planted):
    alone = [_claim("weak", ["ds-weak"])]
    evaluate(alone, planted, 0.05)
    check = alone[0].checks[0]
    assert 0.025 < check.p_claim < 0.05 and check.p_claim == pytest.approx(_independent("ds-weak").pvalue)
    assert check.p_adjusted == pytest.approx(check.p_claim) and alone[0].verdict == SUPPORTED
    # with a smaller and a larger p-value in the same file, Holm multiplies the weak one by 2
    three = [_claim("weak", ["ds-weak"]), _claim("good", ["ds-good"]), _claim("tie", ["ds-tie"])]
    assert evaluate(three, planted, 0.05) == 3
    raw = [c.checks[0].p_claim for c in three]
    assert [c.checks[0].p_adjusted for c in three] == pytest.approx(list(st.holm(raw)))
    assert three[0].checks[0].p_adjusted == pytest.approx(2 * check.p_claim)
    assert [c.verdict for c in three] == [INCONCLUSIVE, SUPPORTED, INCONCLUSIVE]


def test_min_seeds_in_the_file_and_one_seed(planted):
    one = _claim("one", ["ds-good"])
    one.checks[0].method_keys, one.checks[0].baseline_keys = ["A-ds-good-0"], ["B-ds-good-0"]
    assert evaluate([one], planted, 0.05) == 0      # not part of the Holm family
    assert one.verdict == INCONCLUSIVE and one.checks[0].why == "inconclusive: 1 seed per side (at least 3 needed)"
    strict = _claim("strict", ["ds-good"])
    strict.min_seeds = 4
    evaluate([strict], planted, 0.05)
    assert strict.verdict == INCONCLUSIVE and "at least 4 needed" in strict.checks[0].why


def test_every_dataset_claim_holds_only_if_it_holds_on_each(planted):
    claims = [_claim("all-good", ["ds-good"]), _claim("good-and-tie", ["ds-good", "ds-tie"]),
              _claim("good-and-bad", ["ds-good", "ds-bad"])]
    evaluate(claims, planted, 0.05)
    assert [c.verdict for c in claims] == [SUPPORTED, INCONCLUSIVE, REFUTED]
    assert [ch.verdict for ch in claims[2].checks] == [SUPPORTED, REFUTED]


def test_missing_data_and_missing_runs_are_not_checkable(planted):
    c = _claim("x", ["ds-good"])
    c.checks.append(Check("x", "elsewhere", "accuracy", missing="dataset elsewhere: data not found"))
    c.checks.append(Check("x", "ds-none", "accuracy", None, ["nope"], ["B-ds-good-0"]))
    evaluate([c], planted, 0.05)
    assert c.verdict == NOT_CHECKABLE
    assert c.checks[1].why == "dataset elsewhere: data not found"
    assert "no finished run" in c.checks[2].why


def test_reports_escape_and_carry_the_numbers(planted):
    c = _claim("good", ["ds-good"])
    c.text = "<script>alert(1)</script> | *bold*"
    c.commands = ["python -m bench sweep --methods A B --datasets ds-good"]
    rep = Report("claims/x.yaml", "t <b>", 0.05, [c])
    rep.tests = evaluate([c], planted, 0.05)
    page = render(rep, "html")
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "default-src 'none'" in page
    md = render(rep, "md")
    assert "**supported**" in md and "paired seeds + cases" in md and "3 seeds × 132 cases" in md
    assert "\\|" in md and "python -m bench sweep --methods A B" in md and "detectable" in md
    data = json.loads(render(rep, "json"))
    row = data["claims"][0]["checks"][0]
    assert row["verdict"] == SUPPORTED and row["seeds_method"] == 3 and row["n_cases"] == 132
    assert row["ci_low"] > 0 and row["p_holm"] < 0.05 and row["detectable"] > 0 and data["claims"][0]["min_seeds"] == 3


# ------------------------------------------------------------------------------- claims files
def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


GOOD = """
protocol: {preset: tiny, seeds: [0, 1], set: {epochs: 2}}
claims:
  - id: a
    claim: attention beats early
    method: attention
    baseline: early
    dataset: wdbc
    metric: accuracy
"""


@pytest.mark.parametrize("edit, field", [
    (("metric: accuracy", "metric: accurracy"), "claims[0] (a).metric"),
    (("method: attention", "method: atention"), "claims[0] (a).method"),
    (("dataset: wdbc", "dataset: wdbcx"), "claims[0] (a).datasets"),
    (("dataset: wdbc", "datasets: [wdbc, wdbc]"), "claims[0] (a).datasets"),
    (("metric: accuracy", "metric: accuracy\n    size: -1"), "claims[0] (a).size"),
    (("metric: accuracy", "metric: accuracy\n    direction: up"), "claims[0] (a).direction"),
    (("metric: accuracy", "metric: accuracy\n    colour: red"), "claims[0] (a).colour"),
    (("preset: tiny", "preset: huge"), "protocol.preset"),
    (("seeds: [0, 1]", "seeds: [0, 0]"), "protocol.seeds"),
    (("method: attention", "method: {name: attention, set: {backbone: x}}"), "claims[0] (a).method.set.backbone"),
    (("baseline: early", "baseline: single"), "claims[0] (a).baseline"),
    (("baseline: early", "baseline: attention"), "claims[0] (a)"),
    (("- id: a\n    claim:", "- claim:"), "claims[0].id"),
    (("protocol: {preset", "protocol: {suite: nope, preset"), "protocol"),
    (("protocol: {preset", "min_seeds: 1\nprotocol: {preset"), "min_seeds"),
    (("metric: accuracy", "metric: accuracy\n    min_seeds: three"), "claims[0] (a).min_seeds"),
])
def test_bad_files_fail_with_one_line_naming_file_and_field(tmp_path, edit, field):
    path = _write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_claims(path)
    msg = str(err.value)
    assert msg.startswith(f"claims file {path}: {field}") and "\n" not in msg


def test_good_file_parses_and_yaml_errors_are_one_line(tmp_path):
    cf = load_claims(_write(tmp_path, GOOD))
    c = cf.claims[0]
    assert (c.method.name, c.baseline.name, c.datasets, c.metric, c.higher, c.protocol.seeds, c.min_seeds) == \
        ("attention", "early", ("wdbc",), "accuracy", True, (0, 1), 3)
    two = load_claims(_write(tmp_path, "min_seeds: 2\n" + GOOD.replace("metric: accuracy",
                                                                         "metric: accuracy\n    min_seeds: 5")))
    assert two.claims[0].min_seeds == 5
    assert load_claims(_write(tmp_path, "min_seeds: 2\n" + GOOD)).claims[0].min_seeds == 2
    with pytest.raises(ConfigError, match=r"YAML syntax error at line"):
        load_claims(_write(tmp_path, "claims: [\n"))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_claims(tmp_path / "missing.yaml")


def test_a_file_that_is_not_utf8_exits_2_naming_it(tmp_path, capsys):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(GOOD.replace("claims:", "# r\xe9sum\xe9\nclaims:").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9 at line \d+\); save the file as UTF-8"):
        load_claims(p)
    assert main(["verify", str(p), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not UTF-8" in err[0] and str(p) in err[0]


@pytest.mark.parametrize("command", ["verify", "sweep"])
def test_a_yaml_python_tag_is_refused_not_run(tmp_path, capsys, command):
    """Claims and suite files are read with yaml.safe_load: a `!!python/object/apply` tag (which
    yaml.load with the full loader would call) is one error line naming the file, exit 2."""
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.yaml"
    p.write_text(f"x: !!python/object/apply:os.system ['touch {marker}']\n" + GOOD, encoding="utf-8")
    args = ["verify", str(p), "--dry-run"] if command == "verify" else ["sweep", "--suite", str(p), "--dry-run"]
    assert main(args) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(p) in err[0] and "python/object/apply" in err[0], err


def test_shipped_claims_files_parse():
    for name in ("demo", "m4oe_miccai24", "m4oe_iclr25", "i2moe_icml25"):
        cf = load_claims(CLAIMS / f"{name}.yaml")
        assert cf.claims
    demo = load_claims(CLAIMS / "demo.yaml")
    assert any("false" in c.text for c in demo.claims)
    m4oe = load_claims(CLAIMS / "m4oe_miccai24.yaml")
    assert m4oe.claims[0].protocol.suite == "paper-m4oe-miccai24" and m4oe.claims[0].size == pytest.approx(0.0345)


def test_cli_bad_file_exits_2_with_one_line(tmp_path, capsys):
    path = _write(tmp_path, GOOD.replace("metric: accuracy", "metric: nope"))
    assert main(["verify", str(path), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: claims file {path}: claims[0] (a).metric") and "\n" not in err


def test_i2moe_claims_without_data_are_not_checkable_and_run_nothing(tmp_path, capsys):
    t0 = time.time()
    assert main(["verify", str(CLAIMS / "i2moe_icml25.yaml"), "--runs-dir", str(tmp_path), "--format", "json",
                 "--data-root", str(tmp_path / "data")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["claims"] and all(c["verdict"] == NOT_CHECKABLE for c in data["claims"])
    for c in data["claims"]:
        for ch in c["checks"]:   # the datasets are registered; their files are not under ./data
            assert ch["verdict"] == NOT_CHECKABLE and "nothing is downloaded" in ch["why"]
    whys = " ".join(ch["why"] for c in data["claims"] for ch in c["checks"])
    for missing in ("adni: missing", "mimic-iv: missing", "mmimdb:", "cmu-mosi: missing mosi_data.pkl",
                    "enrico: missing design_topics.csv"):
        assert missing in whys
    assert RunStore(default_url(tmp_path)).count() == 0
    assert time.time() - t0 < 60


def test_m4oe_claims_without_data_name_the_missing_data(tmp_path, capsys):
    assert main(["verify", str(CLAIMS / "m4oe_miccai24.yaml"), "--runs-dir", str(tmp_path),
                 "--data-root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert out.count("**not checkable here**") >= 12   # summary + per-check rows of 6 claims
    assert "FLARE22" in out and "MED3D needs its pretrained weights" in out
    assert "python -m bench sweep --suite paper-m4oe-miccai24" in out
    assert RunStore(default_url(tmp_path)).count() == 0


def test_dry_run_lists_jobs_and_runs_nothing(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    assert main(["verify", str(path), "--runs-dir", str(tmp_path), "--dry-run", "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert out.out.count("to run") == 4 and "nothing was run" in out.err
    assert RunStore(default_url(tmp_path)).count() == 0


def test_verify_runs_missing_jobs_then_reuses_them(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    args = ["verify", str(path), "--runs-dir", str(tmp_path), "--workers", "1", "--no-progress", "--format", "json"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "4 to run" in first.err
    data = json.loads(first.out)
    check = data["claims"][0]["checks"][0]
    assert check["test"] == "paired seeds + cases" and check["seeds_method"] == check["seeds_baseline"] == 2
    assert check["verdict"] == INCONCLUSIVE and check["why"].endswith("(at least 3 needed)")   # 2 seeds per side
    assert RunStore(default_url(tmp_path)).count() == 4
    assert main(args) == 0
    second = capsys.readouterr()
    assert "4 already in the store, 0 to run" in second.err
    assert json.loads(second.out)["claims"][0]["checks"][0]["p"] == check["p"]
    sweep = data["claims"][0]["commands"][0]
    assert sweep.startswith("python -m bench sweep --methods attention early --datasets wdbc --seeds 0 1 "
                            "--preset tiny --set epochs=2 --workers 1 --threads")
    # the printed sweep line finds exactly the jobs verify ran (same keys): nothing left to run
    argv = sweep.split()[3:] + ["--dry-run"]
    assert main(argv) == 0
    assert "4 done" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_claims_end_to_end(tmp_path, capsys):
    t0 = time.time()
    assert main(["verify", str(CLAIMS / "demo.yaml"), "--runs-dir", str(tmp_path), "--no-progress",
                 "--format", "json"]) == 0
    took = time.time() - t0
    data = json.loads(capsys.readouterr().out)
    verdicts = {c["id"]: c["verdict"] for c in data["claims"]}
    print(f"demo.yaml: {verdicts} in {took:.0f} s")
    assert verdicts["single-left-beats-early-by-5"] == REFUTED      # constructed to be false
    assert verdicts["attention-beats-early-by-10"] == REFUTED       # the claimed size is above the CI
    assert verdicts["i2moe-beats-late-synergy"] == SUPPORTED
    assert verdicts["late-holds-without-m1-unique-m1"] == REFUTED   # constructed to be false: m1 holds the label
    assert verdicts["late-fewer-params-than-attention"] == SUPPORTED    # exact parameter counts
    kinds = {c["kind"] for c in data["claims"]}
    assert {"difference", "relative", "ratio", "value", "equivalent", "noninferior", "all_of"} <= kinds
    for c in data["claims"]:
        for ch in c["checks"]:
            if not ch["in_mean"]:   # the datasets of a mean are shown, the mean is tested
                assert ch["p_holm"] is not None and not math.isnan(ch["p_holm"]), (c["id"], ch)
