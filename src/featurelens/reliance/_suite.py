"""The validation suite of :func:`detect_spurious`: biased data sets with planted ground truth.

Each case pools ``E = 3`` environments (training data collected at three
sites or periods). In every environment:

* the genuine groups ``genuine_0 .. genuine_{G-1}`` (``k`` features each,
  per time step for sequences) are i.i.d. N(0, 1) and the clean label is
  ``g = 1[sum of squares of all genuine values > their number]`` (seed 002's
  rule with the threshold at the expectation, as in
  :func:`featurelens.data.make_biased`); the label ``y`` is ``g`` flipped with
  probability ``label_noise``. This relation is the same in every environment.
* the spurious group ``spurious`` (``k`` features) is N(0, I) conditioned on
  its bias label ``b = 1[sum of squares > its number]`` being equal to ``y``
  with probability ``s_e`` and unconditioned otherwise (the exact conditional
  draw of :func:`featurelens.data.make_shifted`). The environment strengths
  are ``s_e = bias_strength * (1, 0.7, 0.4)``: the shortcut holds strongly at
  one site, less often at the next and least at the third, as in
  Waterbirds-like benchmarks where the spurious attribute's agreement with
  the label differs between environments while the genuine mechanism does not.

Tabular cases ``(n, d)`` come with the per-row environment labels (user-declared
environments). Sequence cases ``(n, T, d)`` list their rows in time order, one
environment after the other, and carry no labels: the detector must find the
drift with time windows. Ground truth: the ``spurious`` group of a case with
``bias_strength > 0`` is positive; every genuine group, and the spurious
group at ``bias_strength = 0`` (pure noise), is negative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._metrics import auc
from featurelens._progress import progress_bar
from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.data._synthetic import SPURIOUS, _draw_conditioned
from featurelens.models import MLP, SmallTransformer, train
from featurelens.reliance._detect import SpuriousReport, Thresholds, detect_spurious

KINDS = ("tabular", "sequence")
#: environment strengths as fractions of the case's bias strength
ENVIRONMENT_FACTORS = (1.0, 0.7, 0.4)
DEFAULT_BIASES = (0.0, 0.4, 0.55, 0.7, 0.85, 0.95)


@dataclass(frozen=True)
class SuiteConfig:
    """Shape of a family of suite cases (one case per bias strength)."""

    kind: str
    n_groups: int
    group_dim: int
    label_noise: float = 0.0
    seq_len: int = 1


DEFAULT_CONFIGS = (
    SuiteConfig("tabular", n_groups=2, group_dim=4, label_noise=0.1),
    SuiteConfig("tabular", n_groups=3, group_dim=3, label_noise=0.2),
    SuiteConfig("tabular", n_groups=1, group_dim=6, label_noise=0.1),
    SuiteConfig("sequence", n_groups=2, group_dim=2, label_noise=0.05, seq_len=5),
)


@dataclass(frozen=True, eq=False)
class SuiteCase:
    """One biased data set with its planted truth.

    Attributes
    ----------
    name : str
    config : SuiteConfig
    bias_strength : float
    environment_strengths : tuple of float
        ``s_e`` per environment.
    X_train, y_train : ndarray
        Training data ``(n, d)`` or ``(n, T, d)`` float32 and 0/1 labels.
    X, y : ndarray
        Independent evaluation data from the same environments.
    environments : ndarray or None
        Environment label per row of ``X`` (tabular), ``None`` for sequences
        (rows in time order; use time windows).
    true_environments : ndarray
        The environment of every row of ``X`` (also for sequences).
    feature_names : list of str
    groups : dict of str to list of str
    truth : dict of str to bool
        Group -> positive ("spurious and shortcut-bearing") or not.
    """

    name: str
    config: SuiteConfig
    bias_strength: float
    environment_strengths: tuple[float, ...]
    X_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    environments: np.ndarray | None = field(repr=False)
    true_environments: np.ndarray = field(repr=False)
    feature_names: list[str] = field(repr=False)
    groups: dict[str, list[str]] = field(repr=False)
    truth: dict[str, bool] = field(repr=False)


def _draw(cfg: SuiteConfig, strengths: Sequence[float], n: int, rng: np.random.Generator):
    """Rows of all environments, environment after environment."""
    t, k, g = cfg.seq_len, cfg.group_dim, cfg.n_groups
    env = np.repeat(np.arange(len(strengths)), -(-n // len(strengths)))[:n]
    genuine = rng.standard_normal((n, t, g * k)).astype(np.float32)
    q = np.einsum("itj,itj->i", genuine.astype(np.float64), genuine.astype(np.float64))
    y = (q > t * g * k).astype(np.int64)
    y = np.where(rng.random(n) < cfg.label_noise, 1 - y, y)
    s = np.asarray(strengths)[env]
    target = np.where(rng.random(n) < s, y, -1)
    spurious = _draw_conditioned(rng, target, t * k).reshape(n, t, k)
    x = np.concatenate([genuine, spurious], axis=2)
    if cfg.kind == "tabular":
        x = x[:, 0, :]
    return x, y.astype(np.float32), env


def make_reliance_suite(
    *,
    biases: Sequence[float] = DEFAULT_BIASES,
    configs: Sequence[SuiteConfig] = DEFAULT_CONFIGS,
    n_train: int = 1500,
    n_eval: int = 3000,
    random_state: RandomState = 0,
) -> list[SuiteCase]:
    """Generate ``len(configs) * len(biases)`` biased data sets (see the module docstring).

    Parameters
    ----------
    biases : sequence of float in [0, 1)
        Nominal bias strengths (the strength in the first environment).
    configs : sequence of SuiteConfig
        Kinds (``"tabular"``/``"sequence"``), group counts and sizes, label noise, sequence length.
    n_train, n_eval : int
        Rows of the training and the evaluation set of each case (split evenly over the environments).
    random_state : int, Generator or None

    Returns
    -------
    list of SuiteCase
        In the order ``for config in configs: for bias in biases``.
    """
    biases = [check_float(b, name="biases[i]", low=0.0, high=1.0) for b in biases]
    n_train = check_int(n_train, name="n_train", minimum=30)
    n_eval = check_int(n_eval, name="n_eval", minimum=30)
    if not biases:
        raise ValueError("biases must hold at least one bias strength")
    if not configs:
        raise ValueError("configs must hold at least one SuiteConfig")
    rng = check_random_state(random_state)
    cases = []
    for c, cfg in enumerate(configs):
        if not isinstance(cfg, SuiteConfig):
            raise TypeError(f"configs[{c}] must be a SuiteConfig, got {type(cfg).__name__}")
        check_option(cfg.kind, name="SuiteConfig.kind", options=KINDS)
        check_int(cfg.n_groups, name="SuiteConfig.n_groups", minimum=1)
        check_int(cfg.group_dim, name="SuiteConfig.group_dim", minimum=1)
        check_int(cfg.seq_len, name="SuiteConfig.seq_len", minimum=1)
        check_float(cfg.label_noise, name="SuiteConfig.label_noise", low=0.0, high=0.5)
        if cfg.kind == "tabular" and cfg.seq_len != 1:
            raise ValueError("SuiteConfig.seq_len must be 1 for kind='tabular'")
        names = [f"genuine_{i}_{j}" for i in range(cfg.n_groups) for j in range(cfg.group_dim)]
        names += [f"{SPURIOUS}_{j}" for j in range(cfg.group_dim)]
        groups = {
            f"genuine_{i}": names[i * cfg.group_dim : (i + 1) * cfg.group_dim] for i in range(cfg.n_groups)
        }
        groups[SPURIOUS] = names[cfg.n_groups * cfg.group_dim :]
        for b in biases:
            strengths = tuple(b * f for f in ENVIRONMENT_FACTORS)
            x_tr, y_tr, _ = _draw(cfg, strengths, n_train, rng)
            x, y, env = _draw(cfg, strengths, n_eval, rng)
            name = (
                f"{cfg.kind}-g{cfg.n_groups}x{cfg.group_dim}-noise{cfg.label_noise:g}"
                f"{'-T' + str(cfg.seq_len) if cfg.kind == 'sequence' else ''}-bias{b:g}"
            )
            truth = {gname: (gname == SPURIOUS and b > 0) for gname in groups}
            cases.append(SuiteCase(
                name, cfg, b, strengths, x_tr, y_tr, x, y,
                env if cfg.kind == "tabular" else None, env, names, groups, truth,
            ))
    return cases


def fit_suite_model(case: SuiteCase, *, epochs: int = 30, random_state: RandomState = 0) -> nn.Module:
    """Train the suite's model for a case: an MLP (tabular) or a small transformer (sequences).

    Tabular: ``MLP(d, hidden=(32, 16))``; sequences: ``SmallTransformer(d,
    n_heads=2, n_layers=1, hidden_dim=16, dropout=0)``. Both trained with
    :func:`featurelens.models.train` (BCE on logits, Adam ``lr=1e-2``,
    batch 64, 20 % validation split, patience 5). Initialisation is seeded
    inside ``torch.random.fork_rng``.
    """
    epochs = check_int(epochs, name="epochs", minimum=1)
    rng = check_random_state(random_state)
    seed = int(rng.integers(0, 2**31 - 1))
    d = case.X.shape[-1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if case.config.kind == "tabular":
            model: nn.Module = MLP(d, hidden=(32, 16))
        else:
            model = SmallTransformer(d, n_heads=2, n_layers=1, hidden_dim=16, dropout=0.0)
    train(model, case.X_train, case.y_train, epochs=epochs, train_batch_size=64, lr=1e-2, patience=5, random_state=seed)
    return model


@dataclass(frozen=True, eq=False)
class SuiteResult:
    """Outcome of :func:`evaluate_suite`.

    Attributes
    ----------
    table : DataFrame
        One row per (case, group): ``case``, ``kind``, ``bias_strength``,
        ``group``, ``truth`` and the detector's table columns
        (``score``, ``relied_upon``, ``unstable``, ``spurious``, reliance,
        relation spread, heterogeneity p-value...).
    auroc : float
        AUROC of ``score`` against ``truth`` over all groups of all cases.
    flagged_at_zero_bias : list of (str, str)
        (case, group) pairs with ``spurious=True`` in cases with bias 0.
    reports : dict of str to SpuriousReport
    thresholds : Thresholds
        The thresholds the verdicts were computed with.
    """

    table: pd.DataFrame
    auroc: float
    flagged_at_zero_bias: list[tuple[str, str]]
    reports: dict[str, SpuriousReport] = field(repr=False)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def flag_rates(self) -> pd.DataFrame:
        """Share of positive / negative groups with the ``spurious`` flag (sensitivity, false-positive rate)."""
        return self.table.groupby("truth")["spurious"].agg(["mean", "sum", "count"])

    def calibration(self) -> pd.DataFrame:
        """Quantiles (min, 5 %, median, 95 %, max) of the evidence per truth class.

        Rows: ``(truth, statistic)`` for the statistics ``reliance_lower``
        (permutation importance minus ``z`` standard errors, with the ``z``
        of the thresholds used), ``excess_spread``, ``heterogeneity_p`` and ``score``.
        """
        t = self._with_lower()
        stats_ = ["reliance_lower", "excess_spread", "heterogeneity_p", "score"]
        q = t.groupby("truth")[stats_].quantile([0.0, 0.05, 0.5, 0.95, 1.0]).unstack()
        return q.stack(level=0, future_stack=True)

    def sweep(
        self, *, min_reliance: Sequence[float], min_spread: Sequence[float], alpha: float | None = None
    ) -> pd.DataFrame:
        """Verdicts the suite would get under other thresholds, from the recorded evidence.

        For every pair ``(min_reliance, min_spread)`` the ``spurious`` flag is
        recomputed exactly as :func:`detect_spurious` does (``alpha`` defaults
        to the one used). Returns one row per pair: ``sensitivity`` (share of
        positive groups flagged), ``false_positive_rate`` (share of negative
        groups flagged) and ``flags_at_zero_bias``.
        """
        t = self._with_lower()
        alpha = self.thresholds.alpha if alpha is None else check_float(alpha, name="alpha", low=0.0, high=1.0)
        n_groups = t.groupby("case")["group"].transform("count")
        heterogeneous = t["heterogeneity_p"].fillna(0.0) < alpha / n_groups
        rows = []
        for r in min_reliance:
            for s in min_spread:
                flag = (t["reliance_lower"] > r) & (t["excess_spread"] >= s) & heterogeneous
                rows.append({
                    "min_reliance": r, "min_spread": s,
                    "sensitivity": float(flag[t["truth"]].mean()),
                    "false_positive_rate": float(flag[~t["truth"]].mean()),
                    "flags_at_zero_bias": int(flag[t["bias_strength"] == 0].sum()),
                })
        return pd.DataFrame(rows)

    def _with_lower(self) -> pd.DataFrame:
        t = self.table.copy()
        t["reliance_lower"] = t["reliance_permutation"] - self.thresholds.z * t["reliance_permutation_se"]
        return t


def evaluate_suite(
    cases: Sequence[SuiteCase] | None = None,
    *,
    fit: Callable[[SuiteCase], nn.Module] | None = None,
    thresholds: Thresholds | None = None,
    epochs: int = 30,
    detect_options: dict[str, Any] | None = None,
    random_state: RandomState = 0,
    progress: bool = False,
) -> SuiteResult:
    """Train a model per case, run :func:`detect_spurious` on its evaluation set, score the verdicts.

    Parameters
    ----------
    cases : sequence of SuiteCase, optional
        Default :func:`make_reliance_suite` with its defaults (24 cases).
    fit : callable, optional
        ``fit(case) -> trained model``; default :func:`fit_suite_model` with ``epochs``.
    thresholds : Thresholds, optional
    epochs : int
        Epochs of the default ``fit``.
    detect_options : dict, optional
        Further keyword arguments of :func:`detect_spurious` (e.g. ``n_repeats``).
    random_state : int, Generator or None
        Seeds model fitting and detection.
    progress : bool
        A progress bar over cases (on a terminal).

    Returns
    -------
    SuiteResult
    """
    cases = make_reliance_suite() if cases is None else list(cases)
    if not cases:
        raise ValueError("cases must hold at least one SuiteCase")
    rng = check_random_state(random_state)
    options = dict(detect_options or {})
    rows, reports = [], {}
    with progress_bar("reliance suite", len(cases), enabled=progress) as advance:
        for case in cases:
            if not isinstance(case, SuiteCase):
                raise TypeError(f"cases must hold SuiteCase objects, got {type(case).__name__}")
            seed = int(rng.integers(0, 2**31 - 1))
            model = fit(case) if fit is not None else fit_suite_model(case, epochs=epochs, random_state=seed)
            report = detect_spurious(
                model, case.X, case.y, groups=case.groups, feature_names=case.feature_names, environments=case.environments,
                thresholds=thresholds, random_state=seed, **options,
            )
            reports[case.name] = report
            for rec in report.table.to_dict(orient="records"):
                rows.append({
                    "case": case.name, "kind": case.config.kind, "bias_strength": case.bias_strength,
                    "truth": case.truth[rec["group"]], **rec,
                })
            advance(1)
    table = pd.DataFrame(rows)
    truth = torch.tensor(table["truth"].to_numpy(dtype=np.float64))
    score = torch.tensor(table["score"].to_numpy(dtype=np.float64))
    auroc = auc(truth, score) if 0 < int(truth.sum()) < len(truth) else float("nan")
    zero = table[(table["bias_strength"] == 0) & table["spurious"]]
    return SuiteResult(
        table, auroc, list(zip(zero["case"], zero["group"], strict=True)), reports,
        Thresholds() if thresholds is None else thresholds,
    )
