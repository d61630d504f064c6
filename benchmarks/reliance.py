"""Reliance acceptance numbers: the detector's validation suite and mitigation of a planted shortcut.

Mitigation runs on the biased data of the superposition and spurious-correlation notebook.

Part 1 (detection): :func:`featurelens.datasets.make_reliance_suite` (24 biased
data sets: bias 0 to 0.95, tabular and sequence inputs, several group counts,
sizes and label noise), one model trained per set, :func:`detect_spurious`
on its evaluation set; prints the AUROC of the "spurious and relied upon"
score over all groups and the groups flagged on sets with bias 0.

Part 2 (mitigation): :func:`featurelens.reliance.mitigation_benchmark` — the
notebook's biased data (5 genuine groups of 10 standard-normal features and a
spurious group, bias 0.8), an MLP trained on it, every mitigation strategy
judged on shifted test sets where the spurious link is broken
(``make_shifted``, ``"independent"`` and ``"reversed"``); prints
in-distribution accuracy, shifted accuracy and reliance on the spurious group
before and after, and the strategies that meet the issue's bar (shifted
accuracy +10 points or more, reliance cut by 50 % or more).

    python benchmarks/reliance.py --threads 1 [--json out.json] [--skip-suite]
        [--n-train 120000 --n-test 10000 --epochs 100] [--strategy NAME ...]

Torch runs on ``--threads`` CPU threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import featurelens
from featurelens.datasets import make_reliance_suite
from featurelens.reliance import evaluate_suite, mitigation_benchmark

MIN_GAIN_POINTS = 10.0
MIN_RELIANCE_CUT = 0.5


def suite_part(seed: int) -> dict:
    t0 = time.perf_counter()
    cases = make_reliance_suite(random_state=seed)
    result = evaluate_suite(cases, random_state=seed)
    seconds = time.perf_counter() - t0
    rates = result.flag_rates
    print(f"validation suite: {len(cases)} data sets, {len(result.table)} groups, {seconds:.1f} s")
    print(f"  AUROC of the spurious-and-relied-upon score over groups: {result.auroc:.4f}")
    print(f"  groups flagged on sets with bias 0: {len(result.flagged_at_zero_bias)} "
          f"{result.flagged_at_zero_bias or ''}")
    print("  flag rate by truth (mean = share flagged spurious):")
    print(rates.to_string())
    return {"n_cases": len(cases), "auroc": result.auroc, "seconds": seconds,
            "flagged_at_zero_bias": [list(p) for p in result.flagged_at_zero_bias],
            "flag_rates": rates.reset_index().to_dict(orient="records")}


def mitigation_part(seed: int, n_train: int, n_test: int, epochs: int, strategies: list[str] | None) -> dict:
    t0 = time.perf_counter()
    kwargs = {} if strategies is None else {"strategies": strategies}
    result = mitigation_benchmark(n_train=n_train, n_test=n_test, epochs=epochs, random_state=seed, **kwargs)
    seconds = time.perf_counter() - t0
    table = result.table
    print(f"\nmitigation on the superposition and spurious-correlation notebook's biased data "
          f"(bias 0.8, 5 genuine groups of 10 + 'spurious'; "
          f"{n_train} training rows, {n_test} validation / test / shifted rows each; {epochs} epochs max), "
          f"{seconds:.1f} s")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    passed = {}
    for shifted in ("independent", "reversed"):
        meets = result.meets(shifted_gain=MIN_GAIN_POINTS / 100, reliance_cut=MIN_RELIANCE_CUT, shifted=shifted)
        passed[shifted] = [s for s, ok in meets.items() if ok]
        print(f"  strategies with {shifted}-shift accuracy +{MIN_GAIN_POINTS:g} points or more and reliance "
              f"cut by {MIN_RELIANCE_CUT:.0%} or more: {len(passed[shifted])} {passed[shifted]}")
    return {"table": table.to_dict(orient="records"), "seconds": seconds, "meets": passed,
            "n_train": n_train, "n_test": n_test, "epochs": epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train", type=int, default=120000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--strategy", action="append", default=None, help="Only these strategies (repeatable).")
    ap.add_argument("--skip-suite", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"featurelens {featurelens.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s)")
    out: dict = {"threads": args.threads, "seed": args.seed}
    if not args.skip_suite:
        out["suite"] = suite_part(args.seed)
    out["mitigation"] = mitigation_part(args.seed, args.n_train, args.n_test, args.epochs, args.strategy)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2,
                                        default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


if __name__ == "__main__":
    main()
