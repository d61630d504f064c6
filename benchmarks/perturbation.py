"""Ablation and permutation: featurelens vs Captum 0.9.0 / sklearn vs the plain-torch floor.

Workload (docs/benchmarks.md, ../shared/research/attribution.md): MLP
64-256-256-1, 1024 rows of standard-normal data, 8 groups of 8 adjacent
columns, zero baselines, CPU, fixed torch threads. The floor is one batched
no-grad forward over the 1024 + 8 × 1024 rows that any exact method must
evaluate, with the perturbed rows built by hand, in the fastest of three
chunkings (1024-row calls, 4096-row calls, one call).

    python benchmarks/perturbation.py --threads 1 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import hand_perturb, time_it

import featurelens
from featurelens.attribution import attribute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from captum.attr import FeatureAblation, FeaturePermutation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)).eval()
    x = torch.randn(args.rows, 64, generator=torch.Generator().manual_seed(1))
    groups = {f"g{k}": list(range(8 * k, 8 * k + 8)) for k in range(8)}
    mask = (torch.arange(64) // 8).unsqueeze(0)
    fwd = lambda t: model(t).squeeze(-1)  # noqa: E731

    def floor_of(permute: bool):
        def best() -> tuple[float, int]:
            return min((time_it(lambda c=c: hand_perturb(model, x, permute, c), repeats=args.repeats)[0], c)
                       for c in (1024, 4096, 9216))
        return best

    fa, fp = FeatureAblation(fwd), FeaturePermutation(fwd)
    rows = []
    cases = [
        ("ablation, 8 groups", floor_of(False),
         lambda: attribute(model, x, method="ablation", groups=groups),
         {"ppe=1": lambda: fa.attribute(x, feature_mask=mask),
          "ppe=8": lambda: fa.attribute(x, feature_mask=mask, perturbations_per_eval=8)}),
        ("permutation, 8 groups, 1 repeat", floor_of(True),
         lambda: attribute(model, x, method="permutation", groups=groups, n_repeats=1, random_state=0),
         {"ppe=1": lambda: fp.attribute(x, feature_mask=mask),
          "ppe=8": lambda: fp.attribute(x, feature_mask=mask, perturbations_per_eval=8)}),
    ]
    # sklearn's permutation_importance: 64 single columns, 5 repeats, MSE against noisy targets
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.inspection import permutation_importance

    class _Wrapped(RegressorMixin, BaseEstimator):
        def fit(self, X, y):
            return self

        def predict(self, X):
            with torch.no_grad():
                return model(torch.as_tensor(X, dtype=torch.float32)).squeeze(-1).numpy()

    y = (fwd(x).detach() + 0.1 * torch.randn(len(x), generator=torch.Generator().manual_seed(2))).numpy()
    xn = x.numpy()
    wrapped = _Wrapped().fit(xn, y)

    def hand_repeats(chunk: int) -> None:
        with torch.no_grad():
            for _ in range(5):
                rep = x.unsqueeze(0).repeat(64, 1, 1)
                for j in range(64):
                    rep[j, :, j] = x[torch.randperm(len(x)), j]
                rows = rep.reshape(-1, 64)
                for i in range(0, len(rows), chunk):
                    model(rows[i : i + chunk])

    def floor_repeats() -> tuple[float, int]:
        return min((time_it(lambda c=c: hand_repeats(c), repeats=args.repeats)[0], c) for c in (1024, 4096))

    cases.append(
        ("permutation, 64 columns, 5 repeats, MSE", floor_repeats,
         lambda: attribute(model, x, method="permutation", y=y, metric="mse", n_repeats=5, random_state=0),
         {"sklearn n_jobs=None": lambda: permutation_importance(wrapped, xn, y, scoring="neg_mean_squared_error",
                                                               n_repeats=5, random_state=0)})
    )
    for name, fl, ours, captum in cases:
        f_med, f_chunk = fl()
        o_med, _ = time_it(ours, repeats=args.repeats)
        c_best = min((time_it(c, repeats=args.repeats)[0], k) for k, c in captum.items())
        rows.append({"case": name, "featurelens_ms": o_med, "captum_best_ms": c_best[0], "captum_config": c_best[1],
                     "floor_ms": f_med, "floor_chunk_rows": f_chunk, "featurelens_over_floor": o_med / f_med,
                     "captum_over_featurelens": c_best[0] / o_med})
    print(f"# featurelens {featurelens.__version__}, torch {torch.__version__}, threads {args.threads}, "
          f"{platform.processor() or platform.machine()}, rows {args.rows}, median of {args.repeats}")
    print(f"{'case':40s} {'featurelens ms':>14s} {'anchor ms':>10s} {'floor ms':>9s} {'fl/floor':>9s} "
          f"{'anchor/fl':>9s}")
    for r in rows:
        print(f"{r['case']:40s} {r['featurelens_ms']:14.2f} {r['captum_best_ms']:10.2f} {r['floor_ms']:9.2f} "
              f"{r['featurelens_over_floor']:9.2f} {r['captum_over_featurelens']:9.2f}  "
              f"(anchor {r['captum_config']}, floor chunk {r['floor_chunk_rows']})")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
