"""Training-dynamics HMMs: featurelens vs hmmlearn 0.3.3 on the authors' model-selection sweep,
and the vectorised posterior gradient vs the per-step loop of the Hu et al. (2023) notebook (written correctly), in one
process.

Workload (research note §1.2, §5): 40 runs x 1000 steps x 14 metrics from
``make_planted_runs(n_phases=6, random_state=0)`` (z-scored per run), a run-level 32/8 split,
K = 1..8, 5 restarts per K, exactly 32 EM iterations (no early stopping on either side), full
covariance, every restart scored on the 8 held-out runs.

The whole ``select_model(..., tol=None, random_state=0)`` call (initialisation, batched EM over
sequences and restarts, final likelihoods, test scores) is timed once. The comparison then
re-runs the same 40 fits per K, interleaved so that load drifts on the shared machine hit both
sides alike: featurelens ``fit_hmm(train, n_states=K, init=<the 5 initial models>, n_iter=32,
tol=None)`` + ``score`` of every restart on the test runs, then hmmlearn: for every restart a
``GaussianHMM(K, "full", n_iter=32, tol=-inf, init_params="", covars_prior=0,
implementation=...)`` started from the same initial parameters, ``fit`` on the 32 training
runs and ``score`` on the 8 test runs. ``covars_prior=0``
because hmmlearn adds its prior to every covariance entry, which featurelens does not do;
with it the two would not compute the same fits. hmmlearn's own k-means initialisation is not
timed (it is extra work hmmlearn would do), so the ratio favours hmmlearn.
Equality check: for every fit the 32-step log-likelihood paths and the test log-likelihoods are
compared (max relative difference printed).

Derivative: d p(s_t = k | z_1:t) / d z_t for all t, k on the 40 runs with the K = 5 model.
"loop" = that notebook's structure (precisions inverted once, then a Python loop over steps and
states) with the corrected formula p_k (g_k - sum_j p_j g_j), forward filter included;
"vectorised" = ``posterior_gradient`` (forward filter included). Outputs are compared; times
are medians (5 repeats vectorised, 3 loop).

Threads: OMP/OPENBLAS/MKL_NUM_THREADS are set to 1 before numpy is imported (threadpoolctl
limits also applied when available); torch uses 1 thread.

    python benchmarks/dynamics.py [--quick] [--implementation scaling|log] [--json out.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from featurelens.datasets import make_planted_runs  # noqa: E402
from featurelens.dynamics import fit_hmm, posterior_gradient, select_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _timing import time_it  # noqa: E402

torch.set_num_threads(1)


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "threadpoolctl not installed; env vars set to 1"
    threadpool_limits(1)
    return ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())


def hmmlearn_fits(k, inits, xtr, ltr, xte, lte, implementation: str, n_iter: int):
    """hmmlearn from the given initial parameters: fit on train, score on test, per restart."""
    from hmmlearn.hmm import GaussianHMM as RefHMM

    out = []
    for init in inits:
        ref = RefHMM(k, covariance_type="full", n_iter=n_iter, tol=-np.inf, init_params="",
                     covars_prior=0.0, implementation=implementation)
        ref.startprob_, ref.transmat_ = init.startprob.copy(), init.transmat.copy()
        ref.means_, ref.covars_ = init.means.copy(), init.covars.copy()
        try:
            ref.fit(xtr, ltr)
            out.append((np.array(ref.monitor_.history), ref.score(xte, lte)))
        except ValueError as exc:  # hmmlearn: a covariance became singular
            print(f"  hmmlearn K={k} failed: {exc}")
            out.append(None)
    return out


def compare_sweep(sel, runs, implementation: str, n_iter: int) -> dict:
    """Per K, interleaved: featurelens' EM + test scores, then hmmlearn's, from the same inits."""
    train = [runs[i] for i in sel.train_runs]
    test = [runs[i] for i in sel.test_runs]
    xtr, ltr = np.concatenate(train), [len(s) for s in train]
    xte, lte = np.concatenate(test), [len(s) for s in test]
    rows, worst_path, worst_test, failures = [], 0.0, 0.0, 0
    for k, fit in sel.fits.items():
        inits = [r.initial for r in fit.restarts]
        t0 = time.perf_counter()
        ours = fit_hmm(train, n_states=k, init=inits, n_iter=n_iter, tol=None)
        ours_test = [r.model.score(test) for r in ours.restarts]
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = hmmlearn_fits(k, inits, xtr, ltr, xte, lte, implementation, n_iter)
        t_ref = time.perf_counter() - t0
        for res, test_ll, other in zip(ours.restarts, ours_test, ref, strict=True):
            if other is None:
                failures += 1
                continue
            hist, ref_test = other
            worst_path = max(worst_path, float(np.max(np.abs(hist - res.history) / np.abs(hist))))
            worst_test = max(worst_test, abs(ref_test - test_ll) / abs(ref_test))
        rows.append((k, t_ours, t_ref))
        print(f"  K={k}: featurelens {t_ours:7.2f} s   hmmlearn {t_ref:7.2f} s   ratio {t_ref / t_ours:5.1f}x")
    return {"rows": rows, "worst_path": worst_path, "worst_test": worst_test, "failures": failures}


def gradient_loop(model, runs) -> list[np.ndarray]:
    """The Hu et al. (2023) notebook's per-step loop with the correct derivative (for timing and as a reference)."""
    prec = [np.linalg.inv(model.covars[k]) for k in range(model.n_states)]
    out = []
    for z, p in zip(runs, model.filtered_posterior(runs), strict=True):
        rows = []
        for t in range(len(z)):
            g = [prec[k] @ (model.means[k] - z[t]) for k in range(model.n_states)]
            gbar = sum(p[t, j] * g[j] for j in range(model.n_states))
            rows.append([p[t, k] * (g[k] - gbar) for k in range(model.n_states)])
        out.append(np.array(rows))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 runs x 300 steps, K = 1..4, 2 restarts")
    parser.add_argument("--implementation", default="scaling", choices=["scaling", "log"],
                        help="hmmlearn forward-backward (scaling is its faster one)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    if args.quick:
        n_runs, n_steps, ks, restarts = 10, 300, range(1, 5), 2
    else:
        n_runs, n_steps, ks, restarts = 40, 1000, range(1, 9), 5
    n_iter, d = 32, 14
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch threads {torch.get_num_threads()}, "
          f"BLAS: {blas_threads()}")
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs "
          "(shared machine)")
    runs, _, _ = make_planted_runs(n_runs=n_runs, n_steps=n_steps, n_features=d, n_phases=6, random_state=0)
    print(f"workload: {n_runs} runs x {n_steps} steps x {d} metrics, K = {ks.start}..{ks.stop - 1}, "
          f"{restarts} restarts, {n_iter} iterations, full covariance, 20% runs held out")

    t0 = time.perf_counter()
    sel = select_model(runs, states=ks, n_restarts=restarts, n_iter=n_iter, tol=None, random_state=0)
    t_sel = time.perf_counter() - t0
    print(f"featurelens select_model (init + batched EM + test scores), whole sweep: {t_sel:.2f} s "
          f"(recommended K = {sel.recommended})")
    print(f"same {len(ks) * restarts} fits from equal initial parameters, per K interleaved "
          f"(featurelens fit_hmm + scores, then hmmlearn {args.implementation} fit + score):")
    cmp = compare_sweep(sel, runs, args.implementation, n_iter)
    t_ours = sum(r[1] for r in cmp["rows"])
    t_ref = sum(r[2] for r in cmp["rows"])
    failed = f" ({cmp['failures']} hmmlearn fits failed)" if cmp["failures"] else ""
    print(f"total: featurelens {t_ours:.2f} s, hmmlearn {t_ref:.2f} s{failed}; "
          f"speed-up {t_ref / t_ours:.1f}x (target >= 5x)")
    worst_path, worst_test = cmp["worst_path"], cmp["worst_test"]
    print(f"equal likelihoods: max relative difference of the EM log-likelihood paths {worst_path:.2e}, "
          f"of the test log-likelihoods {worst_test:.2e} (target <= 1e-6): "
          f"{'OK' if max(worst_path, worst_test) <= 1e-6 else 'MISMATCH'}")

    model = sel.best[min(5, ks.stop - 1)]
    ours_ms = time_it(lambda: posterior_gradient(model, runs), repeats=5)[0]
    loop_ms = time_it(lambda: gradient_loop(model, runs), repeats=3, warmup=0)[0]
    diff = max(np.abs(a - b).max()
               for a, b in zip(posterior_gradient(model, runs), gradient_loop(model, runs), strict=True))
    print(f"posterior gradient, {n_runs} runs, K = {model.n_states}: loop {loop_ms:.1f} ms, "
          f"vectorised {ours_ms:.1f} ms, speed-up {loop_ms / ours_ms:.1f}x (target >= 25x); "
          f"max |difference| {diff:.1e}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"select_model_s": t_sel, "per_k": cmp["rows"], "ours_s": t_ours, "hmmlearn_s": t_ref,
                       "speedup": t_ref / t_ours, "worst_path_rel": worst_path, "worst_test_rel": worst_test,
                       "gradient_loop_ms": loop_ms, "gradient_vectorised_ms": ours_ms,
                       "quick": args.quick, "implementation": args.implementation}, fh, indent=2)


if __name__ == "__main__":
    main()
