"""Attribution methods: featurelens vs Captum 0.9.0 vs the plain-torch floor, in one process.

Workload (the anchor of ../shared/research/attribution.md): MLP 64-256-256-1 in eval
mode (``torch.manual_seed(0)``), 1024 standard-normal rows (generator seed 1), target 0,
zero baselines, 8 groups of 8 adjacent columns, CPU, fixed torch threads. The all-outputs
row uses a 64-256-256-10 MLP built the same way.

Floors are the same forward/backward work written by hand in plain torch:
saliency / input × gradient: one forward + backward of the 1024 rows; integrated
gradients: the same rule's nodes and weights, one weighted backward per chunk, best of
2048/4096/8192-row chunks; all outputs: one forward per chunk and 10 backward passes
(a loop or one batched VJP, whichever is faster), best of 1024/2048-row chunks;
ablation / permutation: the 1024 + 8 × 1024 rows evaluated without grad (best of three
chunkings); exact Shapley: the 2**8 × 1024 coalition rows without grad.
"Captum" is the best of its configurations (listed per row). Timings are medians; featurelens,
Captum and the floor are timed in interleaved rounds so that load drifts on a shared machine
do not favour one of them.

The memory check runs integrated gradients (gausslegendre) with n_steps = 50 and 100, each
in a fresh process started through an intermediate shell (a directly exec'd child would
inherit this process's ``ru_maxrss``), and reports the ``ru_maxrss`` increase around the call.

    python benchmarks/attribution.py --threads 1 [--repeats 5] [--json out.json] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _timing import hand_perturb, time_it

import featurelens
from featurelens.attribution import METHODS, attribute

GROUPS = {f"g{k}": list(range(8 * k, 8 * k + 8)) for k in range(8)}
MASK = (torch.arange(64) // 8).unsqueeze(0)


def make_workload(out: int = 1, rows: int = 1024) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, out)).eval()
    x = torch.randn(rows, 64, generator=torch.Generator().manual_seed(1))
    return model, x


def nodes(rule: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights written out by hand (trapezoid weights summing to 1)."""
    if rule == "gausslegendre":
        t, v = np.polynomial.legendre.leggauss(n)
        a, w = 0.5 * (1 + t), 0.5 * v
    else:
        a, w = np.linspace(0, 1, n), np.full(n, 1 / (n - 1))
        w[[0, -1]] /= 2
    return torch.tensor(a, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)


def hand_ig(model: nn.Module, x: torch.Tensor, rule: str, n_steps: int, chunk: int) -> torch.Tensor:
    a, w = nodes(rule, n_steps)
    n, spc = len(x), max(1, chunk // len(x))
    total = torch.zeros_like(x)
    for s0 in range(0, n_steps, spc):
        s1 = min(s0 + spc, n_steps)
        xs = (a[s0:s1, None, None] * x).reshape(-1, x.shape[1]).requires_grad_()
        (g,) = torch.autograd.grad(model(xs).squeeze(-1), xs, w[s0:s1].repeat_interleave(n))
        total += g.view(s1 - s0, n, -1).sum(0)
    return total * x


def hand_ig_all(model: nn.Module, x: torch.Tensor, n_steps: int, chunk: int, batched: bool) -> torch.Tensor:
    a, w = nodes("gausslegendre", n_steps)
    n, spc = len(x), max(1, chunk // len(x))
    total = torch.zeros(*x.shape, 10)
    for s0 in range(0, n_steps, spc):
        s1 = min(s0 + spc, n_steps)
        xs = (a[s0:s1, None, None] * x).reshape(-1, x.shape[1]).requires_grad_()
        out = model(xs)
        go = torch.eye(10)[:, None, :] * w[s0:s1].repeat_interleave(n)[None, :, None]
        if batched:
            (g,) = torch.autograd.grad(out, xs, go, is_grads_batched=True)
        else:
            g = torch.stack([torch.autograd.grad(out, xs, go[k], retain_graph=k < 9)[0] for k in range(10)])
        total += g.view(10, s1 - s0, n, -1).sum(1).permute(1, 2, 0)
    return total * x.unsqueeze(-1)


def fwd_bwd(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    xs = x.detach().requires_grad_()
    return torch.autograd.grad(model(xs).sum(), xs)[0]


def hand_shapley(model: nn.Module, x: torch.Tensor, chunk: int) -> None:
    z = ((torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1).bool()  # (256, 8) coalitions
    cols = z.repeat_interleave(8, dim=1)  # (256, 64)
    with torch.no_grad():
        per_chunk = max(1, chunk // len(x))
        for c0 in range(0, 256, per_chunk):
            keep = cols[c0 : c0 + per_chunk, None, :]
            model(torch.where(keep, x.unsqueeze(0), 0.0).reshape(-1, 64))


def interleaved(cands: dict, repeats: int) -> dict[str, float]:
    """Median ms of each labelled callable, timed in rounds (one run of each per round).

    Interleaving keeps slow drifts of a shared machine from favouring whichever
    callable happened to run in a quiet moment. Each callable is warmed up once.
    """
    times: dict[str, list[float]] = {label: [] for label in cands}
    for fn in cands.values():
        fn()
    for _ in range(repeats):
        for label, fn in cands.items():
            times[label].append(time_it(fn, repeats=1, warmup=0)[0])
    return {label: float(np.median(t)) for label, t in times.items()}


def pick(times: dict[str, float], prefix: str) -> tuple[float, str]:
    """Fastest (ms, label without prefix) among the labels starting with ``prefix``."""
    return min((t, label.removeprefix(prefix)) for label, t in times.items() if label.startswith(prefix))


def memory_child(n_steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    model, x = make_workload()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    attribute(model, x, method="integrated_gradients", n_steps=n_steps)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n_steps": n_steps, "pre_call_mib": before / 1024, "delta_mib": (after - before) / 1024}))


def memory_check(threads: int, runs: int = 3) -> dict:
    """Median ru_maxrss increase over ``runs`` fresh processes per n_steps (alternating)."""
    res: dict[int, list[dict]] = {50: [], 100: []}
    for _ in range(runs):
        for steps in (50, 100):
            cmd = (f"{shlex.quote(sys.executable)} {shlex.quote(__file__)} --memory-child {steps} "
                   f"--threads {threads}; exit $?")
            out = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
            res[steps].append(json.loads(out.strip().splitlines()[-1]))
    med = {k: float(np.median([r["delta_mib"] for r in v])) for k, v in res.items()}
    pre = float(np.median([r["pre_call_mib"] for r in res[50] + res[100]]))
    return {"runs": runs, "delta_mib": {str(k): [r["delta_mib"] for r in v] for k, v in res.items()},
            "median_delta_mib_50": med[50], "median_delta_mib_100": med[100], "pre_call_mib": pre,
            "delta_ratio_100_over_50": med[100] / med[50],
            "total_ratio_100_over_50": (pre + med[100]) / (pre + med[50])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        return memory_child(args.memory_child, args.threads)
    torch.set_num_threads(args.threads)
    import captum
    from captum.attr import (
        FeatureAblation,
        FeaturePermutation,
        InputXGradient,
        IntegratedGradients,
        KernelShap,
        Saliency,
    )

    model, x = make_workload()
    model10, _ = make_workload(out=10)
    fwd = lambda t: model(t).squeeze(-1)  # noqa: E731
    r, slow = 6 * args.repeats, max(1, min(3, args.repeats))  # millisecond rows get more rounds
    xg = x.clone().requires_grad_()  # Captum's gradient methods want inputs that require grad
    rows: list[dict] = []

    def add(case: str, ours, captum: dict, floor: dict, *, repeats: int = r) -> None:
        cands = {"featurelens": ours, **{f"captum:{k}": v for k, v in captum.items()},
                 **{f"floor:{k}": v for k, v in floor.items()}}
        times = interleaved(cands, repeats)
        o = times["featurelens"]
        c_ms, c_cfg = pick(times, "captum:")
        f_ms, f_cfg = pick(times, "floor:")
        rows.append({"case": case, "featurelens_ms": o, "captum_ms": c_ms, "captum_config": c_cfg,
                     "floor_ms": f_ms, "floor_config": f_cfg, "featurelens_over_floor": o / f_ms,
                     "captum_over_featurelens": c_ms / o, "all_ms": times})
        print(f"  measured {case}", file=sys.stderr)

    sal, ixg, ig = Saliency(fwd), InputXGradient(fwd), IntegratedGradients(fwd)
    add("saliency", lambda: attribute(model, x, method="saliency"),
        {"abs=False": lambda: sal.attribute(xg, abs=False), "abs=True": lambda: sal.attribute(xg)},
        {"fwd+bwd 1024": lambda: fwd_bwd(model, x)})
    add("input_x_gradient", lambda: attribute(model, x, method="input_x_gradient"),
        {"default": lambda: ixg.attribute(xg)}, {"fwd+bwd 1024": lambda: fwd_bwd(model, x) * x})
    for rule in ("gausslegendre", "riemann_trapezoid"):
        add(f"IG 50 steps, {rule}", lambda rule=rule: attribute(model, x, method="integrated_gradients", rule=rule),
            {f"ibs={b}": (lambda b=b, rule=rule: ig.attribute(xg, method=rule, n_steps=50, internal_batch_size=b))
             for b in (None, 8192)},
            {f"hand {c}-row chunks": (lambda c=c, rule=rule: hand_ig(model, x, rule, 50, c))
             for c in (1024, 2048, 4096, 8192)},
            repeats=slow)
    ig10 = IntegratedGradients(model10)
    add("IG 50 steps, all 10 outputs", lambda: attribute(model10, x, method="integrated_gradients", target="all"),
        {"loop over targets, ibs=8192": lambda: [ig10.attribute(xg, target=k, n_steps=50, internal_batch_size=8192)
                                                for k in range(10)]},
        {f"hand {c}-row chunks, {'VJP' if b else 'loop'}": (lambda c=c, b=b: hand_ig_all(model10, x, 50, c, b))
         for c in (1024, 2048) for b in (True, False)},
        repeats=slow)
    fa, fp = FeatureAblation(fwd), FeaturePermutation(fwd)
    for name, permute, cap in (("ablation, 8 groups", False, fa), ("permutation, 8 groups", True, fp)):
        method = "permutation" if permute else "ablation"
        opts = {"n_repeats": 1, "random_state": 0} if permute else {}
        add(name, lambda method=method, opts=opts: attribute(model, x, method=method, groups=GROUPS, **opts),
            {f"ppe={p}": (lambda p=p, cap=cap: cap.attribute(x, feature_mask=MASK, perturbations_per_eval=p))
             for p in (1, 8)},
            {f"hand {c}-row chunks": (lambda c=c, permute=permute: hand_perturb(model, x, permute, c))
             for c in (1024, 4096, 9216)})
    if "shapley" in METHODS:
        ks = KernelShap(fwd)
        x16 = x[:16]
        cands = {"featurelens": lambda: attribute(model, x, method="shapley", groups=GROUPS),
                 **{f"captum:n_samples=200, ppe={p}, 16 rows": (lambda p=p: ks.attribute(
                     x16, feature_mask=MASK, n_samples=200, perturbations_per_eval=p)) for p in (1, 200)},
                 **{f"floor:hand {c}-row chunks": (lambda c=c: hand_shapley(model, x, c)) for c in (2048, 8192)}}
        times = interleaved(cands, slow)
        o = times["featurelens"] / len(x)
        c_ms, c_cfg = pick(times, "captum:")
        f_ms, f_cfg = pick(times, "floor:")
        c_ms, f_ms = c_ms / len(x16), f_ms / len(x)
        rows.append({"case": "exact Shapley 8 groups vs KernelShap, per row", "featurelens_ms": o, "captum_ms": c_ms,
                     "captum_config": c_cfg, "floor_ms": f_ms, "floor_config": f_cfg,
                     "featurelens_over_floor": o / f_ms, "captum_over_featurelens": c_ms / o, "all_ms": times})

    print(f"# featurelens {featurelens.__version__}, torch {torch.__version__}, captum {captum.__version__}, "
          f"threads {args.threads}, {platform.processor() or platform.machine()}, median of {r} interleaved rounds "
          f"({slow} for the IG and Shapley rows)")
    print(f"{'case':48s} {'featurelens ms':>14s} {'Captum ms':>10s} {'floor ms':>9s} {'fl/floor':>8s} "
          f"{'Captum/fl':>9s}")
    for row in rows:
        print(f"{row['case']:48s} {row['featurelens_ms']:14.3f} {row['captum_ms']:10.3f} {row['floor_ms']:9.3f} "
              f"{row['featurelens_over_floor']:8.2f} {row['captum_over_featurelens']:9.2f}  "
              f"(Captum {row['captum_config']}; floor {row['floor_config']})")
    memory = None if args.no_memory else memory_check(args.threads)
    if memory:
        print(f"IG peak RSS increase (median of {memory['runs']} fresh processes): n_steps=50 "
              f"{memory['median_delta_mib_50']:.1f} MiB, n_steps=100 {memory['median_delta_mib_100']:.1f} MiB, "
              f"ratio {memory['delta_ratio_100_over_50']:.3f}; whole-process peak ratio "
              f"{memory['total_ratio_100_over_50']:.3f} (pre-call RSS {memory['pre_call_mib']:.0f} MiB); "
              f"runs {memory['delta_mib']}")
    by = {row["case"]: row for row in rows}
    targets = {
        "IG 50 <= 1.15 x floor": all(by[f"IG 50 steps, {k}"]["featurelens_over_floor"] <= 1.15
                                     for k in ("gausslegendre", "riemann_trapezoid")),
        "IG 50 >= 3 x faster than Captum": all(by[f"IG 50 steps, {k}"]["captum_over_featurelens"] >= 3
                                               for k in ("gausslegendre", "riemann_trapezoid")),
        "saliency, input x gradient <= 1.3 x floor": all(by[k]["featurelens_over_floor"] <= 1.3
                                                          for k in ("saliency", "input_x_gradient")),
        "all outputs >= 3 x faster than Captum loop": by["IG 50 steps, all 10 outputs"]["captum_over_featurelens"] >= 3,
    }
    if memory:
        targets["IG peak RSS increase +<= 10 % when n_steps doubles"] = memory["delta_ratio_100_over_50"] <= 1.10
    for k, ok in targets.items():
        print(f"target {'met    ' if ok else 'MISSED '} {k}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__,
                                         "captum": captum.__version__, "rows": rows, "memory": memory,
                                         "targets": targets}, indent=2))


if __name__ == "__main__":
    main()
