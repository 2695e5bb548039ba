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
    (0.03, 0.01, 0.05, 0.001, None, SUPPORTED),        # right way, significant, CI above 0
    (0.03, 0.01, 0.05, 0.001, 0.02, SUPPORTED),        # and the estimate reaches the claimed size
    (0.03, 0.01, 0.05, 0.001, 0.10, REFUTED),          # real effect, but the claimed size is above the CI
    (-0.05, -0.08, -0.02, 0.001, None, REFUTED),       # significant the other way
    (-0.05, -0.08, -0.02, 0.001, 0.05, REFUTED),
    (0.01, -0.01, 0.03, 0.30, None, INCONCLUSIVE),     # not significant
    (-0.01, -0.03, 0.01, 0.30, None, INCONCLUSIVE),    # wrong way but not significant
    (0.03, 0.01, 0.05, 0.001, 0.04, INCONCLUSIVE),     # significant, below the size, size inside the CI
    (0.03, -0.001, 0.05, 0.04, None, INCONCLUSIVE),    # p < alpha but the CI touches 0
    (0.01, -0.01, 0.03, 0.30, 0.05, REFUTED),          # the size is above the CI even though nothing is significant
    (float("nan"), float("nan"), float("nan"), float("nan"), None, INCONCLUSIVE),
])
def test_verdict_rules(adv, lo, hi, p, size, expected):
    v, why = verdict(adv, lo, hi, p, 0.05, size)
    assert v == expected, why
    assert why


def test_verdict_alpha_is_the_threshold():
    assert verdict(0.03, 0.01, 0.05, 0.049, 0.05)[0] == SUPPORTED
    assert verdict(0.03, 0.01, 0.05, 0.05, 0.05)[0] == INCONCLUSIVE


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


@pytest.fixture
def planted(tmp_path):
    """ds-good: A beats B by far; ds-bad: A loses by far; ds-tie: no difference; ds-weak: A wins
    8 discordant pairs to 1 (exact McNemar p = 0.039: significant alone, not after Holm with more)."""
    store = RunStore(default_url(tmp_path))
    for ds, (n10, n01) in {"ds-good": (40, 2), "ds-bad": (2, 40), "ds-tie": (10, 10), "ds-weak": (8, 1)}.items():
        a, b = _pair(n10, n01)
        _put(store, f"A-{ds}", "A", ds, a)
        _put(store, f"B-{ds}", "B", ds, b)
    return store


def _claim(cid: str, datasets: list[str], size=None, direction="better") -> ClaimReport:
    return ClaimReport(cid, f"A beats B on {datasets}", "A", "B", "accuracy", True, direction, size,
                       checks=[Check(cid, d, "accuracy", None, [f"A-{d}"], [f"B-{d}"]) for d in datasets])


def test_planted_verdicts(planted):
    claims = [_claim("good", ["ds-good"]), _claim("bad", ["ds-bad"]), _claim("tie", ["ds-tie"]),
              _claim("good-big", ["ds-good"], size=0.5), _claim("bad-worse", ["ds-bad"], direction="worse")]
    n = evaluate(claims, planted, 0.05)
    assert n == 3    # distinct comparisons: good and good-big share one test, bad and bad-worse another
    v = {c.id: c.verdict for c in claims}
    assert v == {"good": SUPPORTED, "bad": REFUTED, "tie": INCONCLUSIVE, "good-big": REFUTED, "bad-worse": SUPPORTED}
    good = claims[0].checks[0]
    assert good.task == "label" and good.result.test == "McNemar exact"
    assert good.result.extra["n10"] == 40 and good.result.extra["n01"] == 2
    assert good.mean_method == pytest.approx(100 / 132) and good.mean_baseline == pytest.approx(62 / 132)
    assert good.result.effect == pytest.approx(38 / 132)
    exact = st.mcnemar_exact(*_pair(40, 2))
    assert good.result.pvalue == pytest.approx(exact.pvalue)


def test_holm_across_the_claims_of_a_file(planted):
    alone = [_claim("weak", ["ds-weak"])]
    evaluate(alone, planted, 0.05)
    check = alone[0].checks[0]
    assert check.result.pvalue == pytest.approx(0.0390625)   # 2 * P(X >= 8), X ~ Bin(9, 1/2)
    assert check.p_adjusted == pytest.approx(check.result.pvalue) and alone[0].verdict == SUPPORTED
    # with a smaller and a larger p-value in the same file, Holm multiplies the weak one by 2
    three = [_claim("weak", ["ds-weak"]), _claim("good", ["ds-good"]), _claim("tie", ["ds-tie"])]
    assert evaluate(three, planted, 0.05) == 3
    raw = [c.checks[0].result.pvalue for c in three]
    assert [c.checks[0].p_adjusted for c in three] == pytest.approx(list(st.holm(raw)))
    assert three[0].checks[0].p_adjusted == pytest.approx(2 * 0.0390625)
    assert [c.verdict for c in three] == [INCONCLUSIVE, SUPPORTED, INCONCLUSIVE]


def test_every_dataset_claim_holds_only_if_it_holds_on_each(planted):
    claims = [_claim("all-good", ["ds-good", "ds-good"][:1]), _claim("good-and-tie", ["ds-good", "ds-tie"]),
              _claim("good-and-bad", ["ds-good", "ds-bad"])]
    evaluate(claims, planted, 0.05)
    assert [c.verdict for c in claims] == [SUPPORTED, INCONCLUSIVE, REFUTED]
    assert [ch.verdict for ch in claims[2].checks] == [SUPPORTED, REFUTED]


def test_missing_data_and_missing_runs_are_not_checkable(planted):
    c = _claim("x", ["ds-good"])
    c.checks.append(Check("x", "elsewhere", "accuracy", missing="dataset elsewhere: data not found"))
    c.checks.append(Check("x", "ds-none", "accuracy", None, ["nope"], ["B-ds-good"]))
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
    assert "**supported**" in md and "McNemar exact" in md and "132 (132 cases × 1 seeds)" in md
    assert "\\|" in md and "python -m bench sweep --methods A B" in md
    data = json.loads(render(rep, "json"))
    row = data["claims"][0]["checks"][0]
    assert row["verdict"] == SUPPORTED and row["n"] == 132 and row["ci_low"] > 0 and row["p_holm"] < 0.05


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
    assert (c.method.name, c.baseline.name, c.datasets, c.metric, c.higher, c.protocol.seeds) == \
        ("attention", "early", ("wdbc",), "accuracy", True, (0, 1))
    with pytest.raises(ConfigError, match=r"YAML syntax error at line"):
        load_claims(_write(tmp_path, "claims: [\n"))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_claims(tmp_path / "missing.yaml")


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
    assert check["test"] == "McNemar exact" and check["seeds"] == 2 and check["verdict"] in (SUPPORTED, REFUTED,
                                                                                              INCONCLUSIVE)
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
    for c in data["claims"]:
        for ch in c["checks"]:
            assert ch["p_holm"] is not None and not math.isnan(ch["p_holm"])
