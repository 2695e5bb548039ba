"""The simulation behind the default test's degrees of freedom (docs/statistics.md).

Worlds of a binary classifier: per test case a difficulty, per training seed a random shift
(``seed_sd``), per (seed, case) noise, and a method x case interaction (``rho``: the correlation of
the two methods' case difficulties; 1 = the same method). A new test set and new seeds in every
replicate. For each world it prints the false-positive rate (A/A) and the power (one side's
logit +0.15) of three degree-of-freedom rules on the same statistic: Hillis's (2007), the
default (the seed variance at its 80% upper limit, ``results.inference.compare``) and J - 1.

    python scripts/df_rule_grid.py [--reps 2000] [--cases 300] [--seeds 2 3 5]
"""
from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import stats

from results.inference import case_covariance, compare
from results.influence import case_influence

WORLDS = [(0.05, 1.0, 1.0), (0.3, 0.5, 1.0), (0.05, 0.5, 0.7), (0.3, 0.5, 0.7), (0.0, 0.3, 0.5), (0.15, 0.3, 0.9),
          (0.1, 0.5, 0.8), (0.02, 0.3, 0.8)]   # (seed_sd, noise, rho)


def _runs(rng, seeds: int, n: int, seed_sd: float, noise: float, rho: float, shift: float = 0.0):
    a = rng.normal(0, 1, n)
    b = rho * a + math.sqrt(1 - rho ** 2) * rng.normal(0, 1, n)
    out = []
    for mu in (1.0 + 1.5 * a + shift, 1.0 + 1.5 * b):
        out.append([(mu + rng.normal(0, seed_sd) + rng.normal(0, noise, n) > 0).astype(float) for _ in range(seeds)])
    return out


def _p_values(xa, xb) -> dict[str, float]:
    s = len(xa)
    infl = [case_influence("accuracy", {"case_id": np.arange(len(x)), "correct": x}) for x in xa + xb]
    v = np.array([c.value for c in infl])
    res = compare(v[:s], v[s:], np.arange(s), np.arange(s), case_covariance(infl))
    seed, case = res.extra.get("seed_var", 0.0), res.extra.get("case_var", 0.0)
    t = abs(res.effect) / res.se if res.se > 0 else math.inf
    hillis = (s - 1) * (1 + case / seed) ** 2 if seed > 0 else math.inf
    return {"hillis": 2 * stats.t.sf(t, hillis), "default": res.pvalue, "J-1": 2 * stats.t.sf(t, s - 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("| seeds | seed_sd | noise | rho | false positives: Hillis / default / J-1 | power: Hillis / default / J-1 |")
    print("|---|---|---|---|---|---|")
    for s in args.seeds:
        for world in WORLDS:
            fp = {k: 0 for k in ("hillis", "default", "J-1")}
            pw = dict(fp)
            for _ in range(args.reps):
                for k, p in _p_values(*_runs(rng, s, args.cases, *world)).items():
                    fp[k] += p < args.alpha
            for _ in range(args.reps // 4):
                for k, p in _p_values(*_runs(rng, s, args.cases, *world, shift=0.15)).items():
                    pw[k] += p < args.alpha
            f = " / ".join(f"{100 * fp[k] / args.reps:.1f}%" for k in fp)
            w = " / ".join(f"{pw[k] / (args.reps // 4):.2f}" for k in pw)
            print(f"| {s} | {world[0]} | {world[1]} | {world[2]} | {f} | {w} |", flush=True)


if __name__ == "__main__":
    main()
