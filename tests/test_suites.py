"""Suites as YAML files: the shipped suites, validation of a user's file, and dry runs that list
jobs whose data is missing as unavailable. No training except one tiny job."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import ConfigError
from bench.suites import SUITE_DIR, UnavailableJob, get_suite, load_suite_file, suite_jobs, suites
from bench.sweep import expand

# the suites as they were hard-coded before they became YAML (literal lists, not read from the files)
EMBEDDED = ["wdbc", "digits-halves", "diabetes-views", "synthetic-pid:unique-m1", "synthetic-pid:redundant",
            "synthetic-pid:synergy", "synthetic-pid:mixed", "synthetic-mvmt"]
QUICK_METHODS = ["single", "early", "late", "intermediate", "attention", "moe", "soft-moe", "i2moe"]
OLD = {
    "quick": (QUICK_METHODS, EMBEDDED, [0, 1, 2], "small", {"epochs": 20, "patience": 5}),
    "full-offline": (QUICK_METHODS, EMBEDDED, [0, 1, 2, 3, 4], "small", {"epochs": 100, "patience": 15}),
    "seg-quick": (["m4oe", "swinunet", "swinunet-joint", "unet", "unet3d"], ["synthetic-organs"], [0, 1, 2], "tiny", {}),
}
PAPER = ("paper-m4oe-miccai24", "paper-m4oe-iclr25", "paper-i2moe-icml25")


@pytest.mark.parametrize("name", sorted(OLD))
def test_offline_suites_expand_to_the_same_keys_as_before(name):
    methods, datasets, seeds, preset, train = OLD[name]
    old = expand(methods, datasets, seeds, preset=preset, train=train, threads=2)
    new = suite_jobs(get_suite(name), threads=2)
    assert not any(isinstance(j, UnavailableJob) for j in new)
    assert [j.key() for j in new] == [j.key() for j in old]
    assert len({j.key() for j in new}) == len(new)


def test_shipped_suites_load_and_keep_the_one_grid_view():
    shipped = suites()
    assert list(shipped)[:3] == ["quick", "full-offline", "seg-quick"] and set(PAPER) <= set(shipped)
    quick = shipped["quick"]
    assert (list(quick.methods), list(quick.datasets), list(quick.seeds)) == (QUICK_METHODS, EMBEDDED, [0, 1, 2])
    assert quick.preset == "small" and quick.train == {"epochs": 20, "patience": 5}
    assert all(s.description for s in shipped.values())
    for path in SUITE_DIR.glob("*.yaml"):   # every file's name is its suite's name
        assert load_suite_file(path).name == path.stem


def test_paper_suites_follow_the_papers_and_say_what_is_missing():
    seg = get_suite("paper-m4oe-miccai24")
    assert seg.datasets == ("m4oe-miccai24",) and {"m4oe", "swinunet", "swinunet-joint", "unet", "unet3d"} <= set(seg.methods)
    assert {e.sets.get("routing") for e in seg.entries} >= {"hard", "gated-code"}
    assert all(e.preset == "paper" and list(e.seeds) == [0, 1, 2] for e in seg.entries)
    i2 = get_suite("paper-i2moe-icml25")
    assert {e.sets.get("backbone") for e in i2.entries} >= {"early", "late", "attention", "moe"}
    assert all(e.train["optimizer"] == "adam" and e.train["lr"] == 1e-4 for e in i2.entries)
    assert "paper-i2moe-icml25-data" in i2.description
    data = get_suite("paper-i2moe-icml25-data")   # the same configurations on the paper's own datasets
    assert set(data.datasets) == {"adni", "mimic-iv", "mmimdb", "cmu-mosi", "enrico"}
    assert [(e.methods, e.sets, e.train, e.preset, e.seeds) for e in data.entries] == [
        (e.methods, e.sets, e.train, e.preset, e.seeds) for e in i2.entries]
    assert all(isinstance(j, UnavailableJob) for j in suite_jobs(data, threads=1, data_root="/nonexistent"))
    mt = get_suite("paper-m4oe-iclr25")
    for missing in ("m4oe-mt", "EMBED", "RSNA", "VinDr", "GAMMA"):
        assert missing in mt.description
    assert all(e.train["lr"] == 5e-5 and e.train["epochs"] == 100 for e in mt.entries)


GOOD_ENTRY = "  - methods: [early]\n    datasets: [wdbc]\n"


@pytest.mark.parametrize("text, field, hint", [
    ("name: x\nentries: [\n", "YAML syntax error at line", "fix the YAML"),
    ("name: x\nentriez:\n" + GOOD_ENTRY, "top level.entriez: unknown key", "use only: name, description, entries"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    epochs: 3\n", "entries[0].epochs: unknown key", "use only: methods"),
    ("name: x\nentries:\n  - methods: [nope]\n    datasets: [wdbc]\n", "entries[0].methods: unknown method 'nope'",
     "bench list methods"),
    ("name: x\nentries:\n  - methods: [early]\n    datasets: [nope]\n", "entries[0].datasets: unknown dataset 'nope'",
     "bench list datasets"),
    ("name: x\nentries:\n  - methods: []\n    datasets: [wdbc]\n", "entries[0].methods: expected a non-empty list",
     "list at least one method"),
    ("name: x\nentries: []\n", "entries: expected a non-empty list", "list one or more entries"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    seeds: []\n", "entries[0].seeds: expected a non-empty list", "seeds: [0, 1, 2]"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    seeds: [-1]\n", "entries[0].seeds: bad seed -1", "an integer in 0..4294967295"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    seeds: [1.5]\n", "entries[0].seeds: bad seed 1.5", "an integer"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    seeds: [0, 0]\n", "entries[0].seeds: a seed appears twice", "once"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    seeds: 3\n", "entries[0].seeds: expected a non-empty list", "seeds: [0"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    preset: huge\n", "entries[0].preset: unknown preset 'huge'", "tiny, small, paper"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    train: {epochs: many}\n", "entries[0].train.epochs: expected a int value",
     "fix the value"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    train: {epochs: 0}\n", "entries[0].train: epochs must be >= 1", "fix"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    train: {epoch: 3}\n", "entries[0].train.epoch: not a training field",
     "use one of: epochs"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    train: [epochs]\n", "entries[0].train: expected a mapping", "train: {"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    set: {routing: hard}\n", "entries[0].set.routing: method 'early' has no "
     "hparam 'routing'", "bench list methods"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    set: {hidden: [1, 2]}\n", "entries[0].set.hidden: expected a single value",
     "give one value"),
    ("name: x\nentries:\n" + GOOD_ENTRY + "    set: {hidden: wide}\n", "entries[0].set.hidden: expected a int value", "fix"),
    ("name: x\nentries:\n  - methods: [attention]\n    datasets: [wdbc]\n    set: {match_params: 3}\n", "entries[0].set.match_params: expected true or false",
     "write true or false"),
    ("name: [x]\nentries:\n" + GOOD_ENTRY, "name: expected a non-empty string", "give the suite a name"),
    ("- methods: [early]\n", "top level: expected a mapping", "entries:"),
    ("name: x\nentries:\n  - early\n", "entries[0]: expected a mapping", "methods"),
])
def test_bad_suite_file_is_one_line_naming_file_and_field(tmp_path, capsys, text, field, hint):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        get_suite(str(path))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"suite file {path}: ") and field in msg and hint in msg, msg
    code = main(["sweep", "--suite", str(path), "--dry-run", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and field in err[0], err


def test_missing_suite_file_and_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        get_suite(str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="unknown suite 'nope'; choose one of: quick, full-offline, seg-quick"):
        get_suite("nope")


def _dry_run(capsys, *args: str) -> tuple[list[dict], str]:
    assert main(["sweep", *args, "--dry-run", "--json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_paper_suite_without_data_lists_every_job_as_unavailable(tmp_path, capsys):
    rows, err = _dry_run(capsys, "--suite", "paper-m4oe-miccai24", "--data-root", str(tmp_path / "data"),
                         "--runs-dir", str(tmp_path / "runs"))
    assert len(rows) == 5 * 3 + 3 * 3
    assert {r["state"] for r in rows} == {"unavailable"} and all(r["key"] is None for r in rows)
    assert {r["label"] for r in rows} >= {"m4oe@paper", "unet3d@paper", "m4oe@paper[routing=hard]",
                                           "m4oe@paper[dice_weight=0.7]"}
    why = rows[0]["why"]
    assert "\n" not in why and str(tmp_path / "data" / "FLARE22") in why and "--data-root" in why
    assert "24 unavailable" in err
    # the table: key column "-"
    assert main(["sweep", "--suite", "paper-m4oe-miccai24", "--dry-run", "--data-root", str(tmp_path / "data"),
                 "--runs-dir", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + 24 and all(re.search(r"\|\s+-\s+\|$", line) for line in table[2:])


def _user_suite(tmp_path: Path) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text("description: one tiny job and a dataset without data\n"
                    "entries:\n"
                    "  - methods: [early]\n    datasets: [wdbc]\n    seeds: [0]\n    preset: tiny\n"
                    "    train: {epochs: 1}\n"
                    "  - methods: [unet, unet3d]\n    datasets: [flare22]\n    seeds: [0, 1]\n    preset: tiny\n"
                    "    set: {dice_weight: 0.7}\n")
    return path


def test_user_suite_file_mixes_runnable_and_unavailable_jobs(tmp_path, capsys):
    path = _user_suite(tmp_path)
    runs = ["--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs")]
    rows, err = _dry_run(capsys, "--suite", str(path), *runs)
    assert [(r["label"], r["dataset"], r["seed"], r["state"]) for r in rows] == [
        ("early@tiny[epochs=1]", "wdbc", 0, "to run"),
        ("unet@tiny[dice_weight=0.7]", "flare22", 0, "unavailable"),
        ("unet@tiny[dice_weight=0.7]", "flare22", 1, "unavailable"),
        ("unet3d@tiny[dice_weight=0.7]", "flare22", 0, "unavailable"),
        ("unet3d@tiny[dice_weight=0.7]", "flare22", 1, "unavailable")]
    assert rows[0]["key"] and "1 to run, 4 unavailable" in err

    # a real sweep runs what it can and reports the rest (records carry the file's suite name)
    code = main(["sweep", "--suite", str(path), *runs, "--workers", "1", "--no-progress", "--no-leaderboard"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 jobs planned, 0 already done, 1 run" in err and "4 unavailable" in err
    assert "4 jobs on flare22 unavailable: flare22: data not found" in err

    rows, _ = _dry_run(capsys, "--suite", str(path), *runs, "--workers", "1")   # the same threads, the same key
    assert rows[0]["state"] == "done"
    from bench.store import RunStore, default_url

    assert [r.suite for r in RunStore(default_url(tmp_path / "runs")).records()] == ["mine"]


def test_sweep_of_a_suite_with_no_data_at_all_is_one_line(tmp_path, capsys):
    code = main(["sweep", "--suite", "paper-m4oe-miccai24", "--data-root", str(tmp_path / "data"),
                 "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: suite paper-m4oe-miccai24: no job can run here: "
                                                             "m4oe-miccai24: ")


def test_command_line_seeds_and_set_override_each_entry(tmp_path, capsys):
    rows, _ = _dry_run(capsys, "--suite", str(_user_suite(tmp_path)), "--seeds", "5", "--set", "epochs=2",
                       "--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    assert {r["seed"] for r in rows} == {5} and rows[0]["label"] == "early@tiny[epochs=2]"
    assert "epochs=2" in rows[-1]["label"]


def test_list_suites_shows_entries(capsys):
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    for name in ("quick", "seg-quick", *PAPER):
        assert f"  {name} " in out
    assert "8 methods x 8 datasets x seeds 0-2 @small; train epochs=20 patience=5" in out
    assert main(["list", "suites", "--json"]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)["suites"]}
    assert listed["quick"]["entries"][0]["seeds"] == [0, 1, 2]
    assert listed["paper-m4oe-miccai24"]["entries"][1]["set"] == {"routing": "hard"}
