"""Model selection over the number of hidden states with a run-level train/test split."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from featurelens._progress import progress_bar
from featurelens._protocol import html_table, jsonable
from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.dynamics._em import (
    HMMFit,
    _best_fit,
    _check_fit_options,
    _em,
    _em_groups,
    _initial_models,
)
from featurelens.dynamics._hmm import GaussianHMM, check_sequences
from featurelens.dynamics._inference import _Design


@dataclass(frozen=True)
class ModelSelection:
    """Result of :func:`select_model`.

    Attributes
    ----------
    table : one row per (n_states, restart): ``train_loglik`` and ``test_loglik`` (total
        log-likelihood of the train / test runs under the restart's final parameters),
        ``aic`` and ``bic`` on the **training** runs (``-2 LL + 2 p``, ``-2 LL + p log N``,
        N = training time steps, p = ``GaussianHMM.n_parameters``), ``test_aic`` and
        ``test_bic`` on the test runs (the authors' convention), ``n_parameters``, ``n_iter``,
        ``converged`` and ``selected`` (the restart kept as ``best[K]``).
    best : K -> the restart with the highest *training* log-likelihood (the test runs are
        never used to pick parameters).
    recommended : the K chosen by ``rule``.
    rule : the rule, in words, with its numbers.
    train_runs, test_runs : indices of the runs in each split.
    fits : K -> the full :class:`HMMFit` (initial parameters and histories of every restart).
    """

    table: pd.DataFrame
    best: dict[int, GaussianHMM]
    recommended: int
    rule: str
    train_runs: tuple[int, ...]
    test_runs: tuple[int, ...]
    fits: dict[int, HMMFit]

    def to_frame(self) -> pd.DataFrame:
        """Return the main table: a copy of :attr:`table` (one row per number of states and restart)."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict: ``{"rule", "recommended", "table": [row, ...]}`` (NaN as ``None``)."""
        return jsonable({"rule": self.rule, "recommended": int(self.recommended),
                         "table": self.table.to_dict(orient="records")}, where="selection")

    def _repr_html_(self) -> str:
        return html_table(self.summary(), title=f"HMM model selection: recommended K = {self.recommended}")

    def summary(self) -> pd.DataFrame:
        """Summarise the fits per K (a view of :meth:`to_frame`'s per-restart rows, one row per K).

        Per K: test log-likelihood of the selected restart, mean and std over restarts, mean
        AIC/BIC (train and test).
        """
        g = self.table.groupby("n_states")
        sel = self.table[self.table["selected"]].set_index("n_states")
        return pd.DataFrame(
            {
                "test_loglik_selected": sel["test_loglik"],
                "test_loglik_mean": g["test_loglik"].mean(),
                "test_loglik_std": g["test_loglik"].std(ddof=0),
                "aic_mean": g["aic"].mean(),
                "bic_mean": g["bic"].mean(),
                "test_aic_mean": g["test_aic"].mean(),
                "test_bic_mean": g["test_bic"].mean(),
            }
        )


def _check_states(states: Any) -> list[int]:
    if isinstance(states, (str, bytes)) or not isinstance(states, Iterable):
        raise TypeError(f"states must be an iterable of ints, got {type(states).__name__}")
    ks = sorted({check_int(k, name="states", minimum=1) for k in states})
    if not ks:
        raise ValueError("states is empty; pass e.g. range(1, 9)")
    return ks


def recommend_n_states(test_loglik: dict[int, float], *, gain_fraction: float = 0.9) -> tuple[int, str]:
    """Smallest K whose held-out log-likelihood reaches ``gain_fraction`` of the best gain.

    With ``L(K)`` the test log-likelihood of the selected model for K and ``K0`` the smallest K
    tried, returns the smallest K with ``L(K) - L(K0) >= gain_fraction * (max_K L - L(K0))``.
    On the authors' saved MNIST-LeNet curve (research note §1.2) this rule gives K = 5, the K
    they chose by eye. BIC is reported but not used: on trending metrics it keeps falling.
    """
    gain_fraction = check_float(gain_fraction, name="gain_fraction", low=0.0, high=1.0)
    ks = sorted(test_loglik)
    ll = np.array([test_loglik[k] for k in ks], dtype=np.float64)
    if not np.isfinite(ll).any():
        raise ValueError("no finite test log-likelihood to choose from")
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    k0, kbest = ks[0], ks[int(np.argmax(ll))]
    gain = ll.max() - ll[0] if np.isfinite(ll[0]) else math.inf
    if not gain > 0:
        k = k0
    elif math.isinf(gain):
        k = next(k for k, v in zip(ks, ll, strict=True) if np.isfinite(v))
    else:
        k = next(k for k, v in zip(ks, ll, strict=True) if v - ll[0] >= gain_fraction * gain)
    rule = (
        f"smallest K whose test log-likelihood reaches {gain_fraction:.0%} of the gain from "
        f"K={k0} to the best K={kbest} (selected restart per K = highest training log-likelihood)"
    )
    return k, rule


def select_model(
    sequences: Any,
    *,
    states: Iterable[int] = range(1, 9),
    n_restarts: int = 5,
    n_iter: int = 32,
    covariance_type: str = "full",
    test_fraction: float = 0.2,
    tol: float | None = 1e-4,
    covariance_floor: float = 1e-3,
    init: str = "kmeans",
    gain_fraction: float = 0.9,
    feature_names: Sequence[str] | None = None,
    random_state: RandomState = 0,
    progress: bool = False,
) -> ModelSelection:
    """Fit HMMs for every K in ``states`` on training runs and score them on held-out runs.

    The split is by run: ``round(test_fraction * N)`` runs (at least one) chosen at random
    are held out. For each K, ``n_restarts`` seeded initialisations are drawn as in
    :func:`fit_hmm` (same meaning of every argument); the EM of all K and restarts runs
    batched together (results identical to separate :func:`fit_hmm` calls from the same
    initial parameters); every restart is scored on both splits. The recommended K
    follows :func:`recommend_n_states`. The authors (research note §1.2) chose K by eye from
    these curves, kept the restart with the best *test* score and averaged AIC/BIC; here the
    test runs only score, and every restart's numbers are in ``table``.
    """
    seqs = check_sequences(sequences)
    ks = _check_states(states)
    test_fraction = check_float(test_fraction, name="test_fraction", low=0.0, high=1.0, inclusive=(False, False))
    n = len(seqs)
    if n < 2:
        raise ValueError(f"select_model needs at least 2 runs for a run-level train/test split, got {n}")
    rng = check_random_state(random_state)
    n_test = min(n - 1, max(1, round(test_fraction * n)))
    perm = rng.permutation(n)
    test_idx, train_idx = sorted(perm[:n_test].tolist()), sorted(perm[n_test:].tolist())
    train, test = [seqs[i] for i in train_idx], [seqs[i] for i in test_idx]
    n_train_steps = sum(len(s) for s in train)
    n_test_steps = sum(len(s) for s in test)
    seeds = rng.integers(0, 2**63 - 1, size=len(ks))
    ctype, n_iter, tol, floor, names = _check_fit_options(
        seqs[0].shape[1], covariance_type, n_iter, tol, covariance_floor, feature_names
    )
    n_restarts = check_int(n_restarts, name="n_restarts", minimum=1)
    init = check_option(init, name="init", options=("kmeans", "random"))
    inits = []
    for k, seed in zip(ks, seeds, strict=True):
        inits += _initial_models(train, k, ctype, n_restarts, init, floor, np.random.default_rng(int(seed)), names)
    # all K and restarts in as few batched EM runs as memory allows
    design = _Design(train, ctype)
    total = n_iter * len(_em_groups(design, inits))
    with progress_bar("HMM model selection (EM iterations)", total=total, enabled=progress) as advance:
        results = _em(design, inits, ctype, n_iter=n_iter, tol=tol, floor=floor, advance=advance)
    rows, best, fits = [], {}, {}
    for ik, k in enumerate(ks):
        fit = _best_fit(results[ik * n_restarts : (ik + 1) * n_restarts], n_train_steps)
        fits[k], best[k] = fit, fit.model
        for r, res in enumerate(fit.restarts):
            p = res.model.n_parameters
            test_ll = res.model.score(test)
            rows.append(
                {
                    "n_states": k,
                    "restart": r,
                    "train_loglik": res.loglik,
                    "test_loglik": test_ll,
                    "aic": -2.0 * res.loglik + 2.0 * p,
                    "bic": -2.0 * res.loglik + p * math.log(n_train_steps),
                    "test_aic": -2.0 * test_ll + 2.0 * p,
                    "test_bic": -2.0 * test_ll + p * math.log(n_test_steps),
                    "n_parameters": p,
                    "n_iter": res.n_iter,
                    "converged": res.converged,
                    "selected": r == fit.best_restart,
                }
            )
    table = pd.DataFrame(rows)
    sel = table[table["selected"]]
    recommended, rule = recommend_n_states(dict(zip(sel["n_states"], sel["test_loglik"], strict=True)),
                                           gain_fraction=gain_fraction)
    return ModelSelection(table, best, recommended, rule, tuple(train_idx), tuple(test_idx), fits)
