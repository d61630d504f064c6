"""The validation suite of :func:`featurelens.reliance.detect_spurious`: biased data sets with planted truth.

Each case pools ``E = 3`` environments (training data collected at three
sites or periods). In every environment:

* the genuine groups ``genuine_0 .. genuine_{G-1}`` (``k`` features each,
  per time step for sequences) are i.i.d. N(0, 1) and the clean label is
  ``g = 1[sum of squares of all genuine values > their number]`` (the
  superposition and spurious-correlation notebook's rule with the threshold
  at the expectation, as in :func:`make_biased`); the label ``y`` is ``g``
  flipped with probability ``label_noise``. This relation is the same in
  every environment.
* the spurious group ``spurious`` (``k`` features) is N(0, I) conditioned on
  its bias label ``b = 1[sum of squares > its number]`` being equal to ``y``
  with probability ``s_e`` and unconditioned otherwise (the exact conditional
  draw of :func:`make_shifted`). The environment strengths are
  ``s_e = bias_strength * (1, 0.7, 0.4)``: the shortcut holds strongly at
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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.datasets._synthetic import SPURIOUS, _draw_conditioned

KINDS = ("tabular", "sequence")
#: environment strengths as fractions of the case's bias strength
ENVIRONMENT_FACTORS = (1.0, 0.7, 0.4)
DEFAULT_BIASES = (0.0, 0.4, 0.55, 0.7, 0.85, 0.95)


@dataclass(frozen=True)
class SuiteConfig:
    """Shape of a family of suite cases (one case per bias strength).

    Attributes
    ----------
    kind : {"tabular", "sequence"}
        ``"tabular"``: inputs ``(n, d)``; ``"sequence"``: inputs ``(n, seq_len, d)``.
    n_groups : int
        Number ``G >= 1`` of genuine groups.
    group_dim : int
        Features ``k >= 1`` per group (the spurious group has ``k`` too), so
        ``d = (G + 1) * k``.
    label_noise : float
        Probability in ``[0, 0.5]`` that the clean label is flipped.
    seq_len : int
        Time steps ``T >= 1``; must be 1 for ``"tabular"``.
    """

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
