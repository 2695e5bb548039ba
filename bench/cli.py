"""``python -m bench``: the command-line interface.

Every command has ``--help`` with examples; failures print one line ``error: ...`` and exit
non-zero (2 for bad input or configuration, 1 for a run that failed); ``--debug`` shows the
full traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_FAILED, EXIT_USAGE = 1, 2

EPILOGS = {
    "main": """examples:
  python -m bench list
  python -m bench run --method attention --dataset digits-halves --seed 0
  python -m bench sweep --suite quick
  python -m bench tune --method attention --dataset wdbc --trials 8
  python -m bench leaderboard --format csv --out leaderboard.csv""",
    "list": """examples:
  python -m bench list              methods, datasets and suites
  python -m bench list datasets     datasets only
  python -m bench list methods      each method's hparams: meaning, allowed values, value per preset
  python -m bench list --update-tables   rewrite the static method/dataset tables after adding one
  python -m bench list --update-readme README.md   refresh the README's generated tables""",
    "run": """examples:
  python -m bench run --method attention --dataset digits-halves
  python -m bench run --method single:left --dataset digits-halves --seed 1
  python -m bench run --method late --dataset wdbc --set weights=learned --set lr=0.001 --json
  python -m bench run --method early --dataset synthetic-pid:synergy --preset tiny --set epochs=5
  python -m bench run --method m4oe --dataset synthetic-organs --preset tiny --json
  python -m bench run --method m4oe --dataset flare22 --data-root /data --preset paper --device cuda --precision bf16
  python -m bench run --method m4oe --dataset synthetic-organs --routing gated-code --moe-where enc
  python -m bench run --method unet --dataset nnunet:/data/nnUNet_raw/Dataset722_FLARE22 --preset small

--set takes a training field (epochs, batch_size, lr, weight_decay, optimizer, schedule,
step_epochs, step_gamma, patience, grad_clip, select, max_steps, val_every; for segmentation also augment,
fg_oversample, balance, eval_space, metric_compat) or a method hparam (see `bench list methods`).
Segmentation datasets train with M4oE's protocol (SGD, poly LR 0.015, batch 36, validation every
2 epochs, patience 7; epochs 24/40/100 at tiny/small/paper) and are scored on 3-D volumes.""",
    "sweep": """examples:
  python -m bench sweep --suite quick
  python -m bench sweep --methods early attention single --datasets wdbc digits-halves --seeds 0 1 2
  python -m bench sweep --suite quick --runs-dir /tmp/runs --retry-failed
  python -m bench sweep --suite quick --workers 1        one job at a time, in this process
  python -m bench sweep --suite seg-quick                M4oE + segmentation baselines on synthetic-organs
  python -m bench sweep --methods early attention --datasets wdbc --tuned --trials 8
                                                   tune each with 8 trials, then run the best over the seeds
  python -m bench sweep --suite quick --dry-run          list each job: done / to run / stale (and why)
  python -m bench sweep --suite paper-m4oe-miccai24 --data-root /data --dry-run   jobs without data: unavailable
  python -m bench sweep --suite my-suite.yaml            your own suite file (format: README "Suites")
  python -m bench sweep --suite quick --executor dask --workers 4      a dask LocalCluster of 4 processes
  python -m bench sweep --suite quick --executor dask --scheduler tcp://host:8786 --threads 4 --store postgresql://...
                                                         a running dask cluster, and a store its workers share

--executor local (default): this process (--workers 1) or --workers processes on this machine;
dask: a dask cluster (pip install 'bench[dask]'), a LocalCluster of --workers processes or the
one at --scheduler. Each job runs with --threads (default cores // --workers) torch threads, so
both give the same keys and results. Remote workers need the same bench code, the data under the
same --data-root paths, and a store they can all reach (PostgreSQL).

A sweep skips jobs already in the store; rerun the same command to resume an interrupted sweep.
It ends with bench leaderboard's board of its own jobs (--format text, the default, md, csv or json).
Several sweeps may share one store (terminals or machines, e.g. --store postgresql://...): each
job is claimed before it runs, so no job runs twice; a dead worker's claim expires.
A job is stale when the store holds it for other code or data (its key changed).""",
    "tune": """examples:
  python -m bench tune --method i2moe --dataset synthetic-pid:mixed --trials 8 --preset tiny
  python -m bench tune --method i2moe --dataset synthetic-pid:mixed --trials 12 --preset tiny   runs 4 more
  python -m bench tune --method attention --dataset wdbc --trials 20 --timeout 600 --pruner halving
  python -m bench tune --method late --dataset wdbc --trials 16 --storage postgresql://user@db/bench \
      --store postgresql://user@db/bench          start the same command on several machines

One Optuna study per (method, dataset, preset, budget): a seeded TPE sampler over the method's
search space plus the shared training space (lr, weight_decay), a pruner fed by the validation
score after every validation, and the objective the runner selects on (the validation selection
score, lower is better). Trials never see test and never appear in leaderboards. --trials N is the
budget: rerunning with a larger N runs only the missing trials; workers sharing --storage and
--store split the trials between them; a killed worker's trial is run again.""",
    "perf": """examples:
  python -m bench perf i2moe
  python -m bench perf i2moe --json
  python -m bench perf i2moe --device cuda --sizes paper --modalities 3
  python -m bench perf i2moe --device cuda --compile   the batched step under torch.compile vs the fused pass
  python -m bench perf leaderboard                  bench leaderboard over 10,000 synthetic runs
  python -m bench perf leaderboard --runs 1000 --reps 3
  python -m bench perf fingerprint                  content-hash cost: largest embedded dataset, a 1 GiB folder
  python -m bench perf startup                      wall time and peak RSS of --help, list, a tiny run, an empty board
  python -m bench perf m4oe                         data pipeline slices/s per worker, training data-wait share
  python -m bench perf m4oe --device cuda --preset paper --precision bf16 --train-workers 8

i2moe: for each size and number of modalities, the training-step time of I2MoE's loop (oracle),
per-expert and vmap implementations and of one fused backbone pass (a single backbone's
forward+backward over K*(M+1)*B rows: the same backbone FLOPs in one call; a reference figure,
not a bound). Each of --reps repetitions times every one back to back; the ratios loop/batched,
per-expert/vmap and batched/fused are taken within a repetition and shown as min / median / max.
leaderboard: wall time of `python -m bench leaderboard` (a fresh interpreter each time) over a
synthetic store, min / median / max of --reps runs, and the same on an empty store.
m4oe (or --method <any segmentation method>): the segmentation data pipeline on --dataset (default
synthetic-organs) at --preset (default tiny): slices/s for each of --workers DataLoader workers (min /
median / max of --reps repetitions, per worker), then --steps training steps on --device fed with
each of --train-workers: step time, time waiting for the batch, and the data-wait share (goal < 5%).""",
    "cost": """examples:
  python -m bench cost --method i2moe --dataset synthetic-mvmt
  python -m bench cost --method attention intermediate i2moe --dataset digits-halves --preset paper --json
  python -m bench cost --method m4oe swinunet unet --dataset synthetic-organs --preset paper --set batch_size=2
  python -m bench cost --method m4oe-mt --dataset synthetic-mvmt --preset paper --meta --images 4x3x224x224

Builds each model (no training) and measures parameters (total, trainable, active per sample),
forward FLOPs per sample, the median time of a training step, inference latency and peak memory.""",
    "data": """examples:
  python -m bench data check /data/nnUNet_raw/Dataset001_Liver
  python -m bench data check /data/nnUNet_raw/Dataset001_Liver --json
  python -m bench data convert flare22 --data-root /data --out /data/nnUNet_raw
  python -m bench data convert amos22 --data-root /data --out /data/nnUNet_raw --copy
  python -m bench data check folder:my_dataset                 your own table + files (dataset.yaml)
  python -m bench data convert wdbc --to folder --out my_wdbc  any per-sample dataset as such a folder
  python -m bench run --method attention --dataset folder:my_wdbc
  python -m bench data check adni --data-root /data          an I2MoE benchmark under the data root

`data check NAME --data-root R` (adni, mimic-iv, mmimdb, cmu-mosi, enrico, ...) builds the dataset
from the data root and lists every problem it finds (or the missing files), exit 1 if any.

`data check folder:PATH` reads a folder dataset (dataset.yaml + table.csv + files,
docs/folder-format.md) and lists every problem, one line each naming the file, the row (1-based
data row, header not counted) and the column; when clean it prints samples, modalities with their
missing counts, tasks and split sizes (at --split-seed). `data convert NAME --to folder` writes a
registered per-sample dataset as such a folder (raw values, exact float32; a split column only when
the folder's default split rule would not reproduce the dataset's split at --split-seed); the
result is read back and compared before it is put in place.

`data convert` writes the official FLARE22 / AMOS22 (CT and MR parts) / ATLAS23 layouts found
under the data root as nnU-Net v2 raw folders (hard links where possible, else copies; the
inputs are never modified; an existing non-empty output folder is refused). The result passes
`data check` and reads with `--dataset nnunet:<folder>`.

`data check` validates an nnU-Net v2 raw folder (dataset.json, imagesTr/labelsTr, optional
imagesTs/labelsTs) and lists every problem at once, one line each naming the file: unreadable
or truncated NIfTI, shape/affine mismatches between channels and label, label values missing
from dataset.json, NaN/Inf, missing channel files, numTraining mismatch. Files are only read.""",
    "verify": """examples:
  python -m bench verify claims/demo.yaml                     run what is missing, print the verdicts
  python -m bench verify claims/demo.yaml --dry-run           the jobs each claim needs: done / to run
  python -m bench verify claims/m4oe_miccai24.yaml --data-root /data --format html --out claims.html
  python -m bench verify claims/i2moe_icml25.yaml             without the data: every claim not checkable here

Each claim (method vs baseline, dataset(s), metric, direction, claimed size) is tested on the test
split with the paired per-case test of its metric (McNemar, Wilcoxon, DeLong, paired bootstrap;
seed-level t-test without per-case data), Holm-corrected across the file's tests. Verdicts:
supported, refuted, inconclusive, not checkable here (data or method missing; nothing is run for
it). Jobs are built as `bench sweep` builds them (the printed lines reproduce them); those in the
store are reused. Format and rules: README "Verifying claims", docs/claims.md.""",
    "calibrate": """examples:
  python -m bench calibrate --method late --dataset digits-halves --preset tiny --seeds 20
  python -m bench calibrate --method early --dataset diabetes-views --preset tiny --seeds 20 --sizes 3 5
  python -m bench calibrate --method unet --dataset synthetic-organs:ct --preset tiny --seeds 12 --sizes 3
  python -m bench calibrate --method late --dataset wdbc --seeds 20 --dry-run     # which runs exist

Trains (or reuses from the store) one configuration with seeds 0..N-1, splits the seeds at random
into two pseudo-methods of S seeds (the truth: no difference), and runs every test the leaderboard
and bench verify use on each split: the default seed-aware test (paired and unpaired seeds), the
conditional cases-only test, and the pooled per-case tests of earlier versions for reference. It
prints per metric and test the false-positive rate with its simulation error, the coverage of the
95% CIs, the power when one side's predictions are shifted by known amounts, the family error of a
leaderboard column of 4 identical configurations, and how often an A/A claim is supported or
refuted (docs/statistics.md, "Calibration").""",
    "leaderboard": """examples:
  python -m bench leaderboard                     plain-text tables for the terminal
  python -m bench leaderboard --format md         the same tables as Markdown (--out FILE: md by default)
  python -m bench leaderboard --dataset wdbc --format csv --out wdbc.csv
  python -m bench leaderboard --store postgresql://user@host/bench --format json
  python -m bench leaderboard --suite quick --all-versions
  python -m bench leaderboard --format latex --out table.tex     # pdflatex table.tex
  python -m bench leaderboard --format latex --fragment --layout grouped --metric accuracy
  python -m bench leaderboard --format html --out leaderboard.html
  python -m bench leaderboard --ci --alpha 0.01          # mean [95% CI]; marks at alpha = 0.01
  python -m bench leaderboard --test cases               # conditional on these trained models (seeds fixed)
  python -m bench leaderboard --control late --metric accuracy   # Friedman + Wilcoxon-Holm vs late
  python -m bench leaderboard --no-tests --all-singles   # no marks / CI columns; every single:<modality> row
  python -m bench leaderboard --robustness --dataset synthetic-pid:unique-m1   # intact / -m1 / -m2 / noise

Rows are configurations: runs that differ in any setting (hparams, budget, preset, split seed,
threads, code or data) are never averaged; n counts distinct seeds. Only the newest run of each
job is used unless --all-versions is given.

latex: booktabs tables (a complete document; --fragment for the tables alone), mean ± std, best
per column bold and second underlined; --cost adds parameter and training-time columns.
html: one self-contained page (no network) with sortable tables, critical-difference diagrams,
per-dataset seed plots, metric-vs-cost scatters and routing-weight summaries.

Statistics (text, md, latex, html; --no-tests skips them): † marks a configuration significantly
worse than the best of its column (paired per-case test, Holm-corrected per column, --alpha); csv/json
get worse_than_best, p_adjusted, test and a 95% bootstrap CI (ci_low, ci_high, ci_over = cases or
seeds). --ci shows mean [CI] in the tables. Single-modality baselines: one row per dataset, the
single:<modality> with the best validation primary metric, labelled "best single (<modality>)"
(--all-singles keeps all). --control METHOD adds a Friedman test over datasets and a Wilcoxon-Holm
comparison of every configuration with METHOD (docs/results.md).

--robustness: per configuration the test metric intact, with each modality removed (-m) and with
Gaussian noise on each modality (m~s, s x the modality's training std); every multimodal run
stores these (docs/protocol.md "Robustness"); text, md, csv, json, or html with plots.

The board is built in one place, results/pipeline.py: bench sweep's closing board is the same one,
restricted to the sweep's jobs.""",
}


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", default=os.environ.get("BENCH_RUNS_DIR", "runs"),
                   help="run directory for the SQLite store and checkpoints (default ./runs or $BENCH_RUNS_DIR)")
    p.add_argument("--store", default=None, help="SQLAlchemy URL of the run store (default sqlite:///<runs-dir>/runs.db)")


def _add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="small", choices=("tiny", "small", "paper"), help="model size preset (default small)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training field or method hparam (repeatable)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    p.add_argument("--routing", choices=("hard", "gated", "gated-code", "dense"),
                   help="M4oE routing (same as --set routing=...)")
    p.add_argument("--moe-where", choices=("enc", "dec", "both"), help="M4oE: blocks with experts (--set moe_where=...)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads per job (part of the job key; default: torch's default, divided by --workers "
                        "in a sweep)")
    p.add_argument("--data-root", default=None, help="root of external datasets (default $BENCH_DATA_ROOT or ./data)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_execution_args(p: argparse.ArgumentParser) -> None:
    """Speed options that never change the protocol (bench.execution, docs/gpu.md)."""
    g = p.add_argument_group("execution (speed; precision, tf32, channels-last and compile are part of the job key)")
    g.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="autocast precision of the model's forward; fp16 trains with loss scaling (default fp32)")
    g.add_argument("--no-tf32", action="store_true",
                   help="never use TF32 (by default fp32 uses it on Ampere+ GPUs unless deterministic)")
    g.add_argument("--channels-last", action="store_true", help="channels-last memory format for conv nets")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (first steps are slow)")
    g.add_argument("--data-workers", type=int, default=None, metavar="N",
                   help="DataLoader workers for segmentation training batches; results are identical for any N "
                        "(default: 0 on CPU, up to 8 on a GPU)")


def _execution(args):
    from .execution import Execution

    return Execution(precision=args.precision, tf32=not args.no_tf32, channels_last=args.channels_last,
                     compile=args.compile, data_workers=args.data_workers)


class _Parser(argparse.ArgumentParser):
    """argparse prints usage and the error on two lines or more; bench's errors are one line."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type of counts that must be at least 1 (``--threads 0`` would be stored in the job
    key while torch kept its default thread count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="python -m bench", description="Benchmark multimodal fusion and MoE methods "
                                     "under one protocol.", epilog=EPILOGS["main"], formatter_class=fmt)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list methods, datasets and suites", epilog=EPILOGS["list"], formatter_class=fmt)
    p.add_argument("what", nargs="?", choices=("methods", "datasets", "suites"), help="what to list (default all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--markdown", action="store_true", help="print the README's registry tables")
    p.add_argument("--update-readme", metavar="PATH", help="rewrite the registry tables in this README")
    p.add_argument("--update-tables", action="store_true",
                   help="rewrite methods/table.py and datasets/table.py from the classes and registrations "
                        "(after adding or changing a method or dataset)")

    p = sub.add_parser("run", help="run one job (method x dataset x seed)", epilog=EPILOGS["run"], formatter_class=fmt)
    p.add_argument("--method", required=True, help="method name, e.g. attention or single:<modality>")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. wdbc or synthetic-pid:synergy")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    _add_job_args(p)
    _add_execution_args(p)
    _add_store_args(p)
    p.add_argument("--json", action="store_true", help="print the run record as one JSON line on stdout")
    p.add_argument("--force", action="store_true", help="rerun even if the job is already in the store")
    p.add_argument("--no-deterministic", action="store_true", help="allow non-deterministic kernels (GPU speed)")

    p = sub.add_parser("sweep", help="run a suite or a methods x datasets x seeds grid, skipping finished jobs",
                       epilog=EPILOGS["sweep"], formatter_class=fmt)
    p.add_argument("--suite", help="a shipped suite's name (see `bench list suites`) or the path of a YAML suite file")
    p.add_argument("--methods", nargs="+", help="methods ('single' expands to every modality)")
    p.add_argument("--datasets", nargs="+", help="datasets")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0 1 2)")
    p.add_argument("--executor", default="local", choices=("local", "dask"),
                   help="where jobs run: local (this machine) or dask (a dask cluster; pip install 'bench[dask]'); "
                        "default local")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="--executor dask: address of a running dask scheduler, e.g. tcp://host:8786 (default: start "
                        "a LocalCluster of --workers processes)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel worker processes here (local pool or dask LocalCluster; default: min(2, CPU cores)); "
                        "also sets the threads per job, cores // workers")
    p.add_argument("--retry-failed", action="store_true", help="rerun jobs recorded as failed")
    p.add_argument("--no-leaderboard", action="store_true", help="do not print the leaderboard at the end")
    p.add_argument("--format", default="text", choices=("text", "md", "csv", "json"),
                   help="format of the closing leaderboard, as in bench leaderboard (default text)")
    p.add_argument("--tuned", action="store_true",
                   help="tune each method x dataset first (bench tune, --trials each), then run the best configuration "
                        "over the seeds, labelled 'method (tuned)'")
    p.add_argument("--trials", type=int, help="--tuned: the trial budget of every study (the same for every method)")
    p.add_argument("--tune-seed", type=int, default=None,
                   help="--tuned: seed of the studies and of every trial's training (default 1000; never an "
                        "evaluation seed)")
    p.add_argument("--pruner", default="median", choices=("median", "halving", "none"), help="--tuned: trial pruner")
    p.add_argument("--timeout", type=float, default=None, help="--tuned: start no new trial of a study after S seconds")
    p.add_argument("--storage", default=None, help="--tuned: Optuna storage URL (default sqlite:///<runs-dir>/optuna.db)")
    p.add_argument("--dry-run", action="store_true",
                   help="list each job as done / to run / stale / unavailable (and why); run nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    _add_job_args(p)
    _add_execution_args(p)
    p.set_defaults(preset=None)
    _add_store_args(p)

    p = sub.add_parser("tune", help="tune one method on one dataset with Optuna (validation only)",
                       epilog=EPILOGS["tune"], formatter_class=fmt)
    p.add_argument("--method", required=True, help="method name, e.g. attention or single:<modality>")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. wdbc or synthetic-pid:mixed")
    p.add_argument("--trials", type=int, required=True, help="trial budget of the study (finished trials count)")
    p.add_argument("--timeout", type=float, default=None, help="start no new trial after this many seconds")
    p.add_argument("--seed", type=int, default=None,
                   help="tuning seed: the sampler's seed and every trial's training seed (default 1000, outside "
                        "the evaluation seeds)")
    p.add_argument("--pruner", default="median", choices=("median", "halving", "none"),
                   help="median (default) or successive halving, fed after every validation; none to never prune")
    p.add_argument("--storage", default=None,
                   help="Optuna storage URL (default sqlite:///<runs-dir>/optuna.db; postgresql://... for many machines)")
    p.add_argument("--study", default=None, help="study name (default: derived from the configuration)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_job_args(p)
    _add_store_args(p)

    p = sub.add_parser("perf", help="performance benchmark of a method's implementations", epilog=EPILOGS["perf"],
                       formatter_class=fmt)
    p.add_argument("target", nargs="?", choices=("i2moe", "leaderboard", "m4oe", "fingerprint", "startup"),
                   help="what to benchmark")
    p.add_argument("--size-mb", type=positive_int, default=1024,
                   help="fingerprint: MiB of the generated folder (default 1024)")
    p.add_argument("--method", help="same as the target (kept for `--method i2moe`)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--runs", type=int, default=10_000, help="leaderboard: runs in the synthetic store (default 10000)")
    p.add_argument("--sizes", nargs="+", default=["quick", "paper"], choices=("quick", "paper"), help="sizes to measure")
    p.add_argument("--modalities", nargs="+", type=int, default=[2, 3, 4], help="numbers of modalities (default 2 3 4)")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions per measurement (default 20 for i2moe, 5 for leaderboard, 3 for m4oe)")
    p.add_argument("--json", action="store_true", help="print one JSON list of rows")
    p.add_argument("--compile", action="store_true",
                   help="i2moe: also time the batched implementation under torch.compile (compilation in warm-up)")
    g = p.add_argument_group("m4oe / segmentation data pipeline (bench.perf_pipeline)")
    g.add_argument("--dataset", default="synthetic-organs", help="segmentation dataset (default synthetic-organs)")
    g.add_argument("--preset", default="tiny", help="method preset (default tiny; paper: the paper's slice size and batch)")
    g.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2, 4],
                   help="DataLoader worker counts for the pipeline alone (default 0 1 2 4, clamped to the cores)")
    g.add_argument("--train-workers", nargs="+", type=int, default=None,
                   help="worker counts for the training steps (default: 0 and bench run's GPU choice, up to 8; "
                        "0 and 2 on a CPU)")
    g.add_argument("--steps", type=int, default=8, help="timed training steps per worker count (default 8)")
    g.add_argument("--batches", type=int, default=20, help="batches per pipeline repetition (default 20)")
    g.add_argument("--batch-size", type=int, default=None, help="batch size (default: the preset's)")
    g.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="autocast precision of the training steps (default fp32)")
    g.add_argument("--data-root", default=None, help="root of external datasets (default $BENCH_DATA_ROOT or ./data)")

    p = sub.add_parser("cost", help="parameters, FLOPs, step time and memory of methods, without training",
                       epilog=EPILOGS["cost"], formatter_class=fmt)
    p.add_argument("--method", nargs="+", required=True, help="one or more methods")
    p.add_argument("--dataset", help="dataset whose shapes to use (default: the method's own cost input, e.g. "
                                      "m4oe-mt: synthetic-mvmt, at --preset paper with 4 views of 3x224x224)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (median reported, default 10)")
    p.add_argument("--meta", action="store_true",
                   help="count parameters and FLOPs on the meta device (no weights allocated, nothing timed); "
                        "automatic on CPU above 500M parameters")
    p.add_argument("--images", metavar="NxCxHxW",
                   help="with --meta: replace the dataset's image views by N views of this shape (e.g. 4x3x224x224)")
    _add_job_args(p)
    _add_execution_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON list of rows")

    p = sub.add_parser("data", help="validate or convert a data folder", epilog=EPILOGS["data"], formatter_class=fmt)
    p.add_argument("action", choices=("check", "convert"),
                   help="check: list every problem in an nnU-Net v2 raw folder, a folder dataset (folder:PATH) or "
                        "a registered dataset read from the data root (e.g. adni --data-root R); "
                        "convert: official layout -> nnU-Net v2, or a per-sample dataset -> folder dataset")
    p.add_argument("path", help="check: an nnU-Net v2 folder (the one holding dataset.json), folder:PATH "
                                "(the one holding dataset.yaml) or a dataset name (adni, cmu-mosi, ...); convert: flare22, amos22, amos22-ct, amos22-mr, "
                                "atlas23 (--to nnunet) or a per-sample dataset such as wdbc (--to folder)")
    p.add_argument("--to", choices=("nnunet", "folder"), default=None,
                   help="convert: output format (default nnunet for the segmentation names, folder otherwise)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="folder check: split sizes shown; convert --to folder: the split to reproduce (default 0)")
    p.add_argument("--data-root", default=None, help="convert: root of the official layouts (default $BENCH_DATA_ROOT or ./data)")
    p.add_argument("--out", help="convert: folder to write DatasetNNN_Name folders into (--to nnunet), "
                                 "or the new folder dataset (--to folder; must not exist or be empty)")
    p.add_argument("--copy", action="store_true", help="convert --to nnunet: copy files instead of hard-linking them")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("verify", help="check a claims file: find or run the jobs, test each claim, give verdicts",
                       epilog=EPILOGS["verify"], formatter_class=fmt)
    p.add_argument("file", help="a claims YAML file, e.g. claims/demo.yaml")
    p.add_argument("--format", default="md", choices=("md", "html", "json"), help="report format (default md)")
    p.add_argument("--out", help="write the report to this file instead of stdout")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel worker processes for the jobs to run (default: min(2, CPU cores)); also sets the "
                        "threads per job, cores // workers")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads per job (part of the job key; default cores // --workers, as bench sweep)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--data-root", default=None, help="root of external datasets (default $BENCH_DATA_ROOT or ./data)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs each claim needs (done / to run / not "
                   "checkable here); run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_store_args(p)

    p = sub.add_parser("calibrate", help="measure the tests' false-positive rate, coverage and power on A/A splits "
                       "of one configuration's seeds", epilog=EPILOGS["calibrate"], formatter_class=fmt)
    p.add_argument("--method", required=True, help="the configuration's method, e.g. late or single:left")
    p.add_argument("--dataset", required=True, help="dataset, e.g. digits-halves, diabetes-views, synthetic-organs:ct")
    p.add_argument("--seeds", type=int, default=20, help="seeds to train or reuse: 0..N-1 (default 20; at least 10 "
                   "for useful rates)")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 5], help="seeds per side of each A/A split "
                   "(default 1 3 5)")
    p.add_argument("--splits", type=int, default=1000, help="random A/A splits per size (default 1000)")
    p.add_argument("--pooled-splits", type=int, default=300,
                   help="splits for the pooled per-case reference tests (slower; default 300)")
    p.add_argument("--metric", action="append", help="only these metrics (default: the headline metrics)")
    p.add_argument("--shifts", type=float, nargs="+",
                   help="planted shifts for the power (default: classification 0.25 0.5 1 on the true-class logit; "
                        "regression 0.02 0.05 0.1 of the error; segmentation 0.01 0.02 0.05 Dice)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel worker processes for the runs to train (default: min(2, CPU cores))")
    p.add_argument("--json", action="store_true", help="print the tables as JSON")
    p.add_argument("--dry-run", action="store_true", help="list the runs (done / to run); train nothing")
    _add_job_args(p)
    _add_store_args(p)

    p = sub.add_parser("leaderboard", help="mean ± std over seeds from the run store", epilog=EPILOGS["leaderboard"],
                       formatter_class=fmt)
    p.add_argument("--format", default=None, choices=("text", "md", "latex", "html", "csv", "json"),
                   help="output format (default: text, plain tables for a terminal; md with --out)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.add_argument("--metric", action="append", help="only these metrics (repeatable)")
    p.add_argument("--fragment", action="store_true", help="latex: only the table environments, no preamble")
    p.add_argument("--layout", default="tables", choices=("tables", "grouped"),
                   help="latex: one table per dataset and task, or one table with a column group per dataset")
    p.add_argument("--cost", action="store_true", help="latex: add parameter / training-time / FLOPs columns")
    p.add_argument("--split", default="test", choices=("test", "val"), help="which split's metrics (default test)")
    p.add_argument("--dataset", action="append", help="only these datasets (repeatable)")
    p.add_argument("--method", action="append", help="only these methods or labels (repeatable)")
    p.add_argument("--suite", help="only runs stored by this suite's sweeps")
    p.add_argument("--all-versions", action="store_true",
                   help="also runs superseded by a newer run of the same job (e.g. before a code change)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level of the marks and of --control (default 0.05)")
    p.add_argument("--no-tests", action="store_true",
                   help="no significance marks, no CI / test columns in csv/json (faster on big stores)")
    p.add_argument("--test", default="seeds", choices=("seeds", "cases"),
                   help="seeds (default): the training seed is the unit of replication, with the test-sample "
                        "variance from the per-case tables; cases: conditional on these trained models, seed "
                        "variance ignored (docs/statistics.md)")
    p.add_argument("--ci", action="store_true",
                   help="md/latex/html: show mean [95%% CI] instead of mean ± std (the table says over what)")
    p.add_argument("--all-singles", action="store_true",
                   help="keep every single:<modality> row (default: only the best on validation, per dataset)")
    p.add_argument("--control", metavar="METHOD",
                   help="Friedman over datasets + Wilcoxon-Holm of every configuration vs this one (needs ≥ 2 datasets)")
    p.add_argument("--robustness", action="store_true",
                   help="configurations x {intact, -m1, -m2, ..., m1~0.5, ...}: the test metric with each modality "
                        "removed or noisy (md, csv, json, html)")
    _add_store_args(p)
    return parser


def _store(args):
    from .store import RunStore, default_url

    return RunStore(args.store or default_url(args.runs_dir))


def cmd_list(args) -> int:
    if args.update_tables:
        from datasets.table_build import write_table as write_datasets
        from methods.table_build import write_table as write_methods

        for what, write in (("methods/table.py", write_methods), ("datasets/table.py", write_datasets)):
            print(f"{what}: {'updated' if write() else 'already up to date'}", file=sys.stderr)
        return 0
    if args.markdown or args.update_readme:
        from .docs import registry_tables, update_readme

        if args.update_readme:
            changed = update_readme(args.update_readme)
            print(f"{args.update_readme}: {'updated' if changed else 'already up to date'}", file=sys.stderr)
        else:
            print(registry_tables())
        return 0
    out = {}
    if args.what in (None, "methods"):   # from the static table: imports no method, no torch
        from .listing import method_rows

        out["methods"] = method_rows()
    if args.what in (None, "datasets"):
        from datasets import dataset_entries

        out["datasets"] = [{"name": e.name, "description": e.description, "variants": list(e.variants),
                            "embedded": e.embedded, "open_variant": e.open_variant} for e in dataset_entries()]
    if args.what in (None, "suites"):
        from .suites import suites

        out["suites"] = [{"name": s.name, "description": s.description, "file": s.source,
                          "entries": [{"methods": list(e.methods), "datasets": list(e.datasets), "seeds": list(e.seeds),
                                       "preset": e.preset, "train": e.train, "set": e.sets,
                                       "summary": e.summary()} for e in s.entries]} for s in suites().values()]
    if args.json:
        print(json.dumps(out))
        return 0
    from .listing import hparam_lines

    for section, items in out.items():
        print(f"{section}:")
        for it in items:
            extra = f" [variants: {', '.join(it['variants'])}]" if it.get("variants") else ""
            extra += "" if it.get("embedded", True) else (" [path after ':']" if it.get("open_variant") else " [needs --data-root]")
            print(f"  {it['name']:<16} {it['description']}{extra}")
            if "hparams" in it:
                for line in hparam_lines(it["hparams"]):
                    print(f"  {'':<16} {line}")
            for entry in it.get("entries", []):
                print(f"  {'':<16} - {entry['summary']}")
    return 0


def _job_sets(args) -> dict[str, str]:
    """``--set`` values plus the named shortcuts (``--routing``, ``--moe-where``)."""
    from .config import parse_sets

    sets = parse_sets(args.sets)
    for flag, key in (("routing", "routing"), ("moe_where", "moe_where")):
        if getattr(args, flag, None):
            sets[key] = getattr(args, flag)
    return sets


def _preflight(method: str | None, dataset: str, data_root: str | None) -> None:
    """Check the method name (if given) and the dataset's availability together, so one line
    names every missing part."""
    from datasets import DatasetError, parse_name
    from methods import UnknownMethod, parse_method

    from .config import ConfigError

    problems = []
    try:
        if method is not None:
            parse_method(method)
    except UnknownMethod as exc:
        problems.append(str(exc))
    try:
        entry, variant = parse_name(dataset)
        if entry.check is not None:
            entry.check(data_root, variant)
    except DatasetError as exc:
        problems.append(str(exc))
    if problems:
        raise ConfigError("; and ".join(problems))


def cmd_run(args) -> int:
    from .runner import build_config, run_job

    _preflight(args.method, args.dataset, args.data_root)
    cfg = build_config(args.method, args.dataset, seed=args.seed, split_seed=args.split_seed, preset=args.preset,
                       sets=_job_sets(args), device=args.device, deterministic=not args.no_deterministic,
                       data_root=args.data_root, threads=args.threads, execution=_execution(args))
    store = _store(args)
    holder = store.claim_holder(cfg.key())
    if holder and not args.force:
        print(f"job {cfg.key()} is running in another process ({holder}); waiting for its result", file=sys.stderr)
    record = run_job(cfg, store, args.runs_dir, progress=not args.no_progress and not args.json, force=args.force,
                     strict=True, wait=True)
    if args.json:
        print(record.to_json())
    else:
        _print_record(record)
    if record.status == "failed":
        print(f"error: run failed: {record.error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _print_record(record) -> None:
    print(f"{record.label or record.method} on {record.dataset}, seed {record.seed}: {record.status}"
          + (f" ({record.reason})" if record.reason else "") + f"  [key {record.key}]")
    for task, metrics in record.metrics.get("test", {}).items():
        shown = {k: v for k, v in metrics.items()
                 if "_" not in k or k in ("balanced_accuracy", "macro_f1", "pearson_r", "gate_match", "gate_entropy")
                 or (task == "interpretation" and "agreement" in k)}   # e.g. m4oe-mt's planted_agreement
        if not shown:
            continue
        print(f"  test {task}: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))
        organs = {k[5:]: v for k, v in metrics.items() if k.startswith("dice_")}
        if organs:  # segmentation: per-organ Dice (mean over test cases)
            print("    Dice per organ: " + ", ".join(f"{k}={v:.3f}" for k, v in organs.items()))
    _print_robustness(record)
    if record.cost:
        c = record.cost
        print(f"  cost: {c['params_total']:,} params, {c['flops_per_sample']:,.0f} FLOPs/sample, "
              f"{c['step_time_s'] * 1e3:.2f} ms/step, {c['inference_s_per_sample'] * 1e6:.1f} µs/sample inference, "
              f"train {c['train_time_s']:.1f} s, peak mem {c['peak_memory_bytes'] / 2**20:.0f} MiB")


def _print_robustness(record) -> None:
    """One line per task: the primary metric intact, with each modality removed and noisy."""
    from .catalogue import PRIMARY
    from .robustness import parse_split

    conditions = [(parse_split(s), s) for s in record.metrics if parse_split(s) is not None]
    if not conditions:
        return
    tasks = (record.catalogue or {}).get("tasks", {})
    for task, metrics in record.metrics.get("test", {}).items():
        primary = (tasks.get(task) or {}).get("primary") or PRIMARY.get(tasks.get(task, {}).get("kind", ""))
        if primary not in metrics:
            continue
        cells = [f"intact {metrics[primary]:.3f}"] + [
            f"{cond.column} {record.metrics[split][task][primary]:.3f}" for cond, split in conditions
            if primary in record.metrics[split].get(task, {})]
        print(f"  robustness {task} ({primary}): " + " | ".join(cells))


def cmd_sweep(args) -> int:
    from .config import ConfigError
    from .suites import UnavailableJob, get_suite, suite_jobs
    from .sweep import expand, plan, probe_data, run_sweep, sweep_threads

    suite = suite_name = None
    if args.suite:
        if args.methods or args.datasets:
            raise ConfigError("give either --suite or --methods/--datasets, not both")
        suite = get_suite(args.suite)   # a shipped suite's name or a YAML file's path
        suite_name = suite.name
    elif args.methods and args.datasets:
        methods, datasets, seeds, preset, train = args.methods, args.datasets, args.seeds or [0, 1, 2], args.preset or "small", {}
    else:
        raise ConfigError("sweep needs --suite NAME, or both --methods and --datasets (see --help)")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.trials is not None and not args.tuned:
        raise ConfigError("--trials is the tuning budget of --tuned; add --tuned (or use bench tune)")
    if args.scheduler and args.executor != "dask":
        raise ConfigError("--scheduler needs --executor dask")
    if args.executor == "dask":
        from .dask_executor import require_dask

        require_dask()
    threads = args.threads or (sweep_threads(args.workers) if args.device.startswith("cpu") else None)
    if suite is not None:  # a dataset whose data is missing here: its jobs are unavailable, the others run
        items = suite_jobs(suite, seeds=args.seeds, preset=args.preset, sets=_job_sets(args), split_seed=args.split_seed,
                           device=args.device, data_root=args.data_root, threads=threads, execution=_execution(args))
    else:
        for d in datasets:
            _preflight(None, d, args.data_root)
        items = expand(methods, datasets, seeds, preset=preset, sets=_job_sets(args), train=train,
                       split_seed=args.split_seed, device=args.device, data_root=args.data_root, threads=threads,
                       execution=_execution(args))
    jobs = [j for j in items if not isinstance(j, UnavailableJob)]
    unavailable = [j for j in items if isinstance(j, UnavailableJob)]
    store = _store(args)
    tuning = _tune_for_sweep(args, jobs, store) if args.tuned else None
    if tuning is not None:
        jobs = tuning.jobs + tuning.untuned
    if args.dry_run:   # reads the file-backed datasets it would run on, so absent / bad data shows here too
        planned = iter(probe_data(plan(jobs, store, args.retry_failed), args.runs_dir))
        return _print_plan([j if isinstance(j, UnavailableJob) else next(planned) for j in items], args)
    if not jobs:
        raise ConfigError(f"suite {suite_name}: no job can run here: "
                          + "; ".join(dict.fromkeys(f"{u.dataset}: {u.why}" for u in unavailable)))
    if args.scheduler and store.url.startswith("sqlite"):
        print("warning: remote dask workers share an SQLite store only if its file is on a shared file system; "
              "use --store postgresql://... for a cluster", file=sys.stderr)
    report = run_sweep(jobs, store, args.runs_dir, retry_failed=args.retry_failed, progress=not args.no_progress,
                       workers=args.workers, suite=suite_name, executor=args.executor, scheduler=args.scheduler)
    print(f"sweep: {report.planned} jobs planned, {report.already_done} already done, {report.ran} run, "
          f"{report.ran_elsewhere} run by other workers, {len(report.failed)} failed, {len(report.skipped)} skipped, "
          f"{len(report.unavailable) + len(unavailable)} unavailable, {len(report.bad_data)} with bad data",
          file=sys.stderr)
    for line in report.failed + report.skipped + report.unavailable + _unavailable_lines(unavailable):
        print(f"  {line}", file=sys.stderr)
    for line in report.bad_data:
        print(f"  bad data: {line}", file=sys.stderr)
    if tuning is not None:
        for (method, dataset), r in tuning.results.items():
            print(f"  tuned {method} on {dataset}: {r.trials} trials ({r.complete} complete, {r.pruned} pruned, "
                  f"{r.failed} failed), best validation score {r.best_value:.4g}" if r.best_params else
                  f"  tuned {method} on {dataset}: no complete trial", file=sys.stderr)
        for line in tuning.problems:
            print(f"  not run: {line}", file=sys.stderr)
    if not args.no_leaderboard:   # the board bench leaderboard prints, restricted to this sweep's jobs
        from results.pipeline import BoardOptions, build_board, render_board

        print(render_board(build_board(store, BoardOptions(keys={j.key() for j in jobs})), args.format))
    # absent data (a paper dataset not on this machine) is not an error; data that is here but
    # cannot be read is, like a failed job
    return EXIT_FAILED if report.failed or report.bad_data else 0


def _tune_for_sweep(args, jobs, store):
    """``sweep --tuned``: tune each configuration x dataset with the same budget, then return the
    tuned evaluation jobs (bench.tuning.tuned_jobs)."""
    from .config import ConfigError
    from .tuning import TUNING_SEED, tuned_jobs

    if not args.trials or args.trials < 1:
        raise ConfigError("--tuned needs --trials N >= 1: the trial budget every method gets")
    if args.dry_run:
        raise ConfigError("--dry-run cannot list a --tuned sweep's jobs: they exist once tuning has chosen them; "
                          "run without --tuned --dry-run to see the untuned grid")
    say = None if args.no_progress else (lambda line: print(f"sweep: {line}", file=sys.stderr))
    return tuned_jobs(jobs, store, args.runs_dir, args.trials, seed=TUNING_SEED if args.tune_seed is None
                      else args.tune_seed, pruner=args.pruner, timeout=args.timeout, storage=args.storage,
                      progress=not args.no_progress, say=say)


def _unavailable_lines(unavailable) -> list[str]:
    """One line per dataset (and reason) of a suite's unavailable jobs."""
    groups: dict = {}
    for u in unavailable:
        groups.setdefault((u.dataset, u.why), []).append(u)
    return [f"{len(us)} job{'s' if len(us) != 1 else ''} on {dataset} unavailable: {why}"
            for (dataset, why), us in groups.items()]


def _print_plan(planned, args) -> int:
    """``planned``: PlannedJobs, and a suite's UnavailableJobs (no key: their data is missing)."""
    from collections import Counter

    from tabulate import tabulate

    rows = [{"key": None, "label": p.label, "dataset": p.dataset, "seed": p.seed, "state": p.state, "why": p.why}
            if p.job is None else
            {"key": p.job.key(), "label": p.job.label(), "dataset": p.job.dataset, "seed": p.job.seed,
             "state": p.state, "why": p.why} for p in planned]
    if args.json:
        print(json.dumps(rows))
    else:
        print(tabulate([[r["label"], r["dataset"], r["seed"], r["state"], r["why"], r["key"] or "-"] for r in rows],
                       headers=["configuration", "dataset", "seed", "state", "why", "key"], tablefmt="github"))
    counts = Counter(p.state for p in planned)
    print("dry run: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + "; nothing was run",
          file=sys.stderr)
    return 0


def cmd_tune(args) -> int:
    from .tuning import TUNING_SEED, TuneSpec, tune

    _preflight(args.method, args.dataset, args.data_root)
    spec = TuneSpec(args.method, args.dataset, args.trials, preset=args.preset,
                    seed=TUNING_SEED if args.seed is None else args.seed, split_seed=args.split_seed,
                    sets=_job_sets(args), device=args.device, data_root=args.data_root, threads=args.threads,
                    pruner=args.pruner, timeout=args.timeout, study=args.study).validate()
    store = _store(args)
    say = None if args.json else (lambda line: print(f"tune: {line}", file=sys.stderr))
    result = tune(spec, store, args.runs_dir, storage=args.storage, progress=not args.no_progress and not args.json,
                  on_trial=say)
    if args.json:
        import dataclasses

        print(json.dumps(dataclasses.asdict(result)))
    else:
        _print_tune(result)
    return 0 if result.best_params else EXIT_FAILED


def _print_tune(r) -> None:
    print(f"study {r.study!r} in {r.storage}")
    print(f"trials: {r.finished} of {r.trials} finished ({r.complete} complete, {r.pruned} pruned, {r.failed} failed); "
          f"{r.ran_here} run by this command" + (f"; {r.held_elsewhere} running in other workers" if r.held_elsewhere
                                                 else "") + ("; stopped by --timeout" if r.timed_out else ""))
    print(f"objective: {r.objective}")
    if r.best_params:
        print(f"best: {r.best_value:.6g} (trial {r.best_trial}, run {r.best_key})")
        print("best params: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in sorted(r.best_params.items())))
    else:
        print("best: none yet (no trial completed)")


def cmd_leaderboard(args) -> int:
    """Parse the options, build the board (results.pipeline, the one place a board is built), print it."""
    from results.options import EMPTY, MACHINE_FORMATS, BoardOptions

    fmt = args.format or ("md" if args.out else "text")   # a terminal reads text; a file gets Markdown
    options = BoardOptions(split=args.split, metrics=args.metric, methods=args.method, datasets=args.dataset,
                           suite=args.suite, all_singles=args.all_singles, tests=not args.no_tests, test=args.test,
                           alpha=args.alpha, ci=args.ci, control=args.control, robustness=args.robustness,
                           all_versions=args.all_versions, cost=args.cost, layout=args.layout,
                           fragment=args.fragment).check(fmt)
    store = _store(args)
    if fmt in EMPTY and store.count() == 0:   # nothing stored: say so without loading the pipeline (pandas)
        text = EMPTY[fmt]
    else:
        from results.pipeline import build_board, render_board

        board = build_board(store, options)
        if board.control is not None and fmt in MACHINE_FORMATS:
            print("--control is shown with --format text, md, latex or html", file=sys.stderr)
        text = render_board(board, fmt)
    if args.out:
        Path(args.out).write_text(text + ("\n" if not text.endswith("\n") else ""))
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def cmd_perf(args) -> int:
    from tabulate import tabulate

    from .config import ConfigError

    target = args.target or args.method
    if target == "leaderboard":
        return _perf_leaderboard(args)
    if target == "fingerprint":
        return _perf_fingerprint(args)
    if target == "startup":
        return _perf_startup(args)
    if target is None:
        raise ConfigError("perf benchmarks: i2moe, leaderboard, m4oe (or --method <segmentation method>); "
                          "e.g. python -m bench perf i2moe")
    if target != "i2moe":
        return _perf_pipeline(args, target)
    from .perf import as_dicts, run_perf

    args.reps = 20 if args.reps is None else args.reps
    if args.reps < 1 or any(not 2 <= m <= 8 for m in args.modalities):
        raise ConfigError("--reps must be >= 1 and --modalities values in 2..8")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: CUDA is not available on this machine")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(args.sizes) * len(args.modalities), desc="perf", unit="config", disable=True if args.json else None)
    rows = run_perf(args.device, args.sizes, args.modalities, args.reps, progress=lambda r: bar.update(1),
                    compile=args.compile)
    bar.close()
    if args.json:
        print(json.dumps(as_dicts(rows)))
        return 0
    mem = "CUDA peak MiB" if args.device.startswith("cuda") else "saved-for-backward MiB"

    def span(lo: float, mid: float, hi: float) -> str:
        return f"{lo:.2f} / {mid:.2f} / {hi:.2f}"

    table = [[r.size, r.modalities, r.experts, r.batch, r.hidden, r.tokens, f"{r.loop_ms:.1f}", f"{r.per_expert_ms:.1f}",
              f"{r.vmap_ms:.1f}", f"{r.fused_ms:.1f}", r.batched_impl,
              span(r.speedup_min, r.speedup_median, r.speedup_max),
              span(r.per_expert_over_vmap_min, r.per_expert_over_vmap_median, r.per_expert_over_vmap_max),
              span(r.batched_over_fused_min, r.batched_over_fused_median, r.batched_over_fused_max),
              f"{r.loop_mem_mb:.1f} / {r.batched_mem_mb:.1f} / {r.fused_mem_mb:.1f}"]
             + ([f"{r.compiled_ms:.1f}", span(r.compiled_over_fused_min, r.compiled_over_fused_median,
                                             r.compiled_over_fused_max)] if args.compile else []) for r in rows]
    print(f"I2MoE training step (forward + losses + backward), device {args.device}, {torch.get_num_threads()} threads; "
          f"times: median of {args.reps} repetitions; ratios: min / median / max over the repetitions, each taken "
          f"within one repetition")
    print(tabulate(table, headers=["size", "M", "K", "B", "H", "tokens", "loop ms", "per-expert ms", "vmap ms",
                                   "fused pass ms", "batched =", "loop/batched", "per-expert/vmap",
                                   "batched/fused pass", f"{mem}: loop / batched / fused"]
                   + (["compiled batched ms", "compiled/fused pass"] if args.compile else []), tablefmt="github"))
    return 0


def _perf_startup(args) -> int:
    """``bench perf startup``: wall time and peak RSS of --help, list methods, a tiny wdbc run and an
    empty leaderboard, each in a fresh interpreter, next to ``import torch`` (bench/perf_startup.py)."""
    from tqdm.auto import tqdm

    from .config import ConfigError
    from .perf_startup import as_dicts, format_rows, run_startup

    reps = 5 if args.reps is None else args.reps
    if reps < 1:
        raise ConfigError(f"--reps must be >= 1, got {reps}")
    with tqdm(total=5 * reps, desc="startup", unit="run", disable=True if args.json else None) as bar:
        rows = run_startup(reps, progress=lambda: bar.update(1))
    print(json.dumps(as_dicts(rows)) if args.json else format_rows(rows))
    return 0


def _perf_pipeline(args, method: str) -> int:
    from .perf_pipeline import format_report, run_pipeline_perf

    out = run_pipeline_perf(method, args.dataset, args.preset, args.device, args.workers, args.train_workers,
                            reps=3 if args.reps is None else args.reps, batches=args.batches, steps=args.steps,
                            batch_size=args.batch_size, precision=args.precision, data_root=args.data_root,
                            progress=lambda what: print(f"perf: {what}", file=sys.stderr))
    print(json.dumps(out) if args.json else format_report(out))
    return 0


def _perf_fingerprint(args) -> int:
    from .perf_fingerprint import run_fingerprint_perf

    out = run_fingerprint_perf(args.size_mb, 3 if args.reps is None else max(1, args.reps))
    if args.json:
        print(json.dumps(out))
        return 0
    from tabulate import tabulate

    def span(x: dict) -> str:
        return f"{x['min']:.4f} / {x['median']:.4f} / {x['max']:.4f}"

    rows = [[name, r["files"], f"{r['mib']:.1f}", span(r["cold_s"]), f"{r['cold_mib_per_s']:.0f}", span(r["warm_s"]),
             span(r["stat_only_s"])] for name, r in out.items() if isinstance(r, dict)]
    print(tabulate(rows, headers=["data", "files", "MiB", "cold hash s (min/med/max)", "MiB/s", "cached s",
                                  "stat-only s"], tablefmt="github"))
    return 0


def _perf_leaderboard(args) -> int:
    from .config import ConfigError
    from .perf_leaderboard import run_leaderboard_perf

    reps = 5 if args.reps is None else args.reps
    if reps < 1 or args.runs < 1:
        raise ConfigError("--reps and --runs must be >= 1")
    out = run_leaderboard_perf(args.runs, reps, progress=lambda what: print(f"perf: {what}", file=sys.stderr))
    if args.json:
        print(json.dumps(out))
        return 0
    lb, empty = out["leaderboard_s"], out["empty_store_s"]
    print(f"bench leaderboard over {out['runs']:,} runs ({out['store_mb']:.1f} MiB store), a fresh interpreter each "
          f"time, {reps} repetitions:")
    print(f"  {out['runs']:,} runs: min {lb['min']:.2f} s, median {lb['median']:.2f} s, max {lb['max']:.2f} s; "
          f"peak memory {out['peak_rss_mb']:.0f} MiB")
    print(f"  empty store: min {empty['min']:.2f} s, median {empty['median']:.2f} s, max {empty['max']:.2f} s")
    print(f"  median ratio full / empty: {out['ratio_full_over_empty']:.2f}x; writing the store took {out['write_s']:.1f} s")
    return 0


def cmd_cost(args) -> int:
    from tabulate import tabulate

    from .config import ConfigError
    from .runner import build_config, cost_job

    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    from methods import parse_method

    rows, datasets = [], []
    for method in args.method:
        dataset, images = args.dataset, args.images
        if dataset is None:   # the method's own input (a paper method: the paper's shape at --preset paper)
            own = parse_method(method)[0].cost_input(args.preset)
            if own is None:
                raise ConfigError(f"bench cost needs --dataset for {method} (it declares no input of its own)")
            dataset, images = own[0], images or own[1]
        datasets.append(dataset)
        _preflight(method, dataset, args.data_root)
        cfg = build_config(method, dataset, split_seed=args.split_seed, preset=args.preset,
                           sets=_job_sets(args), device=args.device, data_root=args.data_root, threads=args.threads,
                           execution=_execution(args))
        rows.append(cost_job(cfg, args.steps, meta=True if args.meta else None, images=images))
    if args.json:
        print(json.dumps(rows))
        return 0
    timed = [r for r in rows if not r.get("meta")]
    print(tabulate([[r["method"], f"{r['params_total']:,}", f"{r['params_active']:,}", f"{r['flops_per_sample']:,.0f}",
                     f"{r['step_time_s'] * 1e3:.2f}", f"{r['inference_s_per_sample'] * 1e6:.1f}",
                     f"{r['peak_memory_bytes'] / 2**20:.0f}"]
                    + ([f"{r['train_tflops_per_s']:.3g}" if "train_tflops_per_s" in r else "",
                        f"{r['peak_share']:.1%}" if r.get("peak_share") is not None else "-"] if timed else [])
                    for r in rows],
                   headers=["method", "params", "active params", "FLOPs/sample", f"ms/step (batch {rows[0]['batch_size']})",
                            "µs/sample inference", "peak MiB"] + (["train TFLOP/s", "% of peak"] if timed else []),
                   tablefmt="github"))
    print(f"dataset {', '.join(dict.fromkeys(datasets))}, preset {args.preset}, device {args.device}, "
          f"precision {args.precision}", file=sys.stderr)
    for r in rows:
        if r.get("meta"):
            print(f"{r['method']}: counted on the meta device in {r['meta_s']:.1f} s (inputs {r['inputs']}); "
                  f"fp32 weights {r['weights_bytes'] / 2**30:.1f} GiB; nothing timed", file=sys.stderr)
    return 0


def cmd_data(args) -> int:
    from datasets.segmentation.nnunet import check_dataset

    from .config import ConfigError

    if args.action == "convert":
        from datasets.segmentation.convert import CONVERTIBLE, convert_to_nnunet

        to = args.to or ("nnunet" if args.path in CONVERTIBLE else "folder")
        if not args.out:
            what = "the nnU-Net v2 folders are" if to == "nnunet" else "the folder dataset is"
            raise ConfigError(f"data convert needs --out FOLDER (where {what} written)")
        if to == "folder":
            from datasets import UnknownDataset
            from datasets.folder.writer import convert_to_folder

            if args.path in CONVERTIBLE:
                raise ConfigError(f"{args.path} is segmentation data; convert it with --to nnunet")
            try:
                info = convert_to_folder(args.path, args.out, split_seed=args.split_seed, data_root=args.data_root)
            except (ValueError, UnknownDataset) as exc:
                raise ConfigError(str(exc)) from None
            split = (f"a split column (the split of split seed {args.split_seed})" if info["split_column"]
                     else "no split column (the default rule reproduces the split for every split seed)")
            print(json.dumps(info) if args.json else f"wrote {info['folder']}: {info['samples']} samples, "
                  f"{info['files']} files, {split}; read it with --dataset folder:{info['folder']}")
            return 0
        if args.path not in CONVERTIBLE:
            raise ConfigError(f"--to nnunet converts {', '.join(CONVERTIBLE)}, not {args.path!r} "
                              "(a per-sample dataset converts with --to folder)")
        try:
            written = convert_to_nnunet(args.path, args.data_root, args.out, link=not args.copy)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if args.json:
            print(json.dumps([str(p) for p in written]))
        else:
            for folder in written:
                print(f"wrote {folder}")
        return 0

    if args.path.startswith("folder:"):
        from datasets.folder import check_folder, summary_lines

        problems, summary = check_folder(args.path.removeprefix("folder:"), args.split_seed)
        return _report_check(args, "path", problems, summary, summary_lines)
    if not Path(args.path).exists() and _registered_per_sample(args.path):   # e.g. adni, cmu-mosi:raw
        from datasets.folder import summary_lines
        from datasets.inspect import check_named

        problems, summary = check_named(args.path, args.data_root, args.split_seed)
        return _report_check(args, "dataset", problems, summary, summary_lines)
    problems = check_dataset(args.path)
    out: dict = {"path": args.path, "problems": problems}
    if not problems:  # what a job's key records and the whole content hash, to compare copies
        from datasets import parse_name

        from .identity import cached_content_fingerprint, content_fingerprint

        files, root = parse_name(f"nnunet:{args.path}")[0].input_files(None, args.path)
        out.update(files=len(files), fingerprint=cached_content_fingerprint(files, root)[0],
                   content_sha256=content_fingerprint(files, root))
    if args.json:
        print(json.dumps(out))
    else:
        for line in problems:
            print(line)
        if not problems:
            print(f"files: {out['files']}, fingerprint (job key): {out['fingerprint']}, content: {out['content_sha256']}")
        print(f"{args.path}: {len(problems)} problem(s)" if problems else f"{args.path}: no problems found",
              file=sys.stderr)
    return EXIT_FAILED if problems else 0


def _report_check(args, what: str, problems: list[str], summary: dict | None, summary_lines) -> int:
    """Print a per-sample dataset check: every problem (exit 1) or the summary (exit 0)."""
    if args.json:
        print(json.dumps({what: args.path, "problems": problems, "summary": summary}))
    else:
        for line in problems or summary_lines(summary, args.split_seed):
            print(line)
        print(f"{args.path}: {len(problems)} problem(s)" if problems else f"{args.path}: no problems found",
              file=sys.stderr)
    return EXIT_FAILED if problems else 0


def _registered_per_sample(name: str) -> bool:
    """A registered per-sample dataset name (``adni``, ``cmu-mosi:raw``), not a path."""
    from datasets import UnknownDataset, parse_name

    try:
        entry, _ = parse_name(name)
    except UnknownDataset:
        return False
    return not entry.segmentation and not entry.open_variant


def _shown_url(url: str) -> str:
    """A store URL for a printed command, its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:   # not a URL SQLAlchemy parses: print it as given
        return url


def cmd_verify(args) -> int:
    from .config import ConfigError
    from .sweep import sweep_threads
    from .verify import print_plan, verify

    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    threads = args.threads or (sweep_threads(args.workers) if args.device.startswith("cpu") else None)
    runs_args = (f" --store {_shown_url(args.store)}" if args.store else
                 f" --runs-dir {args.runs_dir}" if args.runs_dir != "runs" else "")
    say = None if args.no_progress and args.dry_run else (lambda line: print(f"verify: {line}", file=sys.stderr))
    report, extra = verify(args.file, _store(args), args.runs_dir, data_root=args.data_root, device=args.device,
                           threads=threads, workers=args.workers, dry_run=args.dry_run,
                           progress=not args.no_progress, runs_args=runs_args, say=say)
    if report is None:
        print_plan(extra)
        return 0
    from results.claims import render

    text = render(report, args.format)
    if args.out:
        Path(args.out).write_text(text + ("\n" if not text.endswith("\n") else ""))
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    counts = {}
    for c in report.claims:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    print("verify: " + ", ".join(f"{n} {v}" for v, n in counts.items()), file=sys.stderr)
    for line in extra:
        print(f"  failed: {line}", file=sys.stderr)
    return EXIT_FAILED if extra else 0


def cmd_calibrate(args) -> int:
    import dataclasses

    from .calibrate import calibration_jobs, load_runs
    from .config import ConfigError
    from .sweep import plan, run_sweep, sweep_threads

    if args.splits < 10 or args.pooled_splits < 0 or any(s < 1 for s in args.sizes) or not 0 < args.alpha < 1:
        raise ConfigError("--splits must be >= 10, --pooled-splits >= 0, --sizes >= 1 and --alpha in (0, 1)")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if 2 * min(args.sizes) > args.seeds:
        raise ConfigError(f"--sizes {min(args.sizes)} needs at least {2 * min(args.sizes)} seeds (--seeds {args.seeds})")
    threads = args.threads or (sweep_threads(args.workers) if args.device.startswith("cpu") else None)
    _preflight(None, args.dataset, args.data_root)
    jobs = calibration_jobs(args.method, args.dataset, args.seeds, args.preset, _job_sets(args), args.split_seed,
                            args.device, args.data_root, threads)
    store = _store(args)
    if args.dry_run:
        return _print_plan(plan(jobs, store), args)
    report = run_sweep(jobs, store, args.runs_dir, progress=not args.no_progress, workers=args.workers)
    if report.ran:
        print(f"calibrate: trained {report.ran} runs, {report.already_done} reused", file=sys.stderr)
    if report.failed or report.unavailable or report.bad_data or report.skipped:
        raise ConfigError("some runs did not finish: " + "; ".join(
            (report.failed + report.bad_data + report.unavailable + report.skipped)[:3]))
    from results.calibration import SHIFTS, calibrate
    from results.calibration import report as render

    runs, metrics = load_runs(store, [j.key() for j in jobs], args.metric)
    shifts = {k: tuple(args.shifts) for k in SHIFTS} if args.shifts else None
    from tqdm.auto import tqdm

    bar = tqdm(total=len(metrics) * len(args.sizes) * 4, desc="calibrate", unit="test", disable=True if args.no_progress
               else None)
    cal = calibrate(runs, metrics, sizes=args.sizes, splits=args.splits, shifts=shifts, alpha=args.alpha,
                    pooled_splits=args.pooled_splits, progress=lambda _: bar.update(1))
    bar.close()
    title = f"{jobs[0].label()} on {args.dataset}, seeds 0-{args.seeds - 1}"
    if args.json:
        print(json.dumps({"configuration": title, "runs": cal.runs, "alpha": cal.alpha,
                          "rows": [dataclasses.asdict(r) for r in cal.rows], "family": cal.family, "claims": cal.claims}))
    else:
        print(f"## Calibration: {title}\n\n" + render(cal))
    return 0


COMMANDS = {"calibrate": cmd_calibrate, "tune": cmd_tune, "list": cmd_list, "perf": cmd_perf, "data": cmd_data, "cost": cmd_cost, "run": cmd_run, "sweep": cmd_sweep, "leaderboard": cmd_leaderboard, "verify": cmd_verify}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command != "leaderboard":  # the leaderboard reads only the store
            from ._imports import check_datasets_package

            check_datasets_package()
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: finished jobs are stored; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns every error into one line
        if args.debug:
            raise
        from .checkpoint import CheckpointWriteError
        from .config import ConfigError
        from .errors import StoreError

        known: tuple[type, ...] = (ConfigError, StoreError, ImportError)
        if "datasets" in sys.modules:
            from datasets import DatasetError

            known += (DatasetError,)
        one_line = " ".join(str(exc).split())
        if isinstance(exc, CheckpointWriteError):
            print(f"error: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILED
        from .errors import StoreIOError

        if isinstance(exc, StoreIOError):   # a full or failing disk: the command was right
            print(f"error: {one_line}", file=sys.stderr)
            return EXIT_FAILED
        msg = one_line if isinstance(exc, known) else \
            f"{exc.__class__.__name__}: {one_line} (rerun with --debug for the traceback)"
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, known) else EXIT_FAILED
