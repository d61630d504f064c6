"""Synthetic data sets with known genuine and spurious feature groups.

The generators of the superposition and spurious-correlation notebook, with the
defects of its code fixed (see below).

Every generator is vectorised and draws from one ``numpy.random.Generator``
built from ``random_state``. Labels are computed from the returned float32
``X`` (sums of squares accumulated in float64), so every label rule stated in
:attr:`GroundTruth.label_rule` holds exactly for the data handed out.

Thresholds: a group of ``k`` standard-normal features has a sum of squares
``Q ~ chi2(k)`` with expectation ``k``; its label is ``Q > k``. The notebook
used ``k / 2``, under which ``P(chi2(50) > 25) = 0.998`` of the labels are 1 and a
model can score 99.8 % by always answering 1. With the expectation the
positive rate is ``P(chi2(k) > k)``: 0.473 for ``k = 50``, 0.440 for
``k = 10``; it tends to 1/2 as ``k`` grows (0.317 for ``k = 1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)
from featurelens.data import FeatureSpec

SPURIOUS = "spurious"
_MARGIN = 1e-6  # relative distance of conditioned draws from the threshold (see _draw_conditioned)


@dataclass(frozen=True)
class GroundTruth:
    """What a synthetic data set was built to contain.

    Attributes
    ----------
    spurious_group : str or None
        Name of the planted spurious group, ``None`` if there is none.
    bias_strength : float
        Strength of the planted link between the spurious group's bias label
        ``b`` and ``y``: in :func:`make_biased`, ``P(y := b)``; in
        :func:`make_shifted` with ``mode="reversed"``, ``P(b := 1 - y)``;
        0.0 where there is no link.
    genuine_groups : list of str
        Groups the genuine label is a function of.
    label_rule : str
        Human-readable definition of ``y``.
    shift : str or None
        ``"independent"`` or ``"reversed"`` for :func:`make_shifted`, else ``None``.
    """

    spurious_group: str | None
    bias_strength: float
    genuine_groups: list[str]
    label_rule: str
    shift: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of the fields."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class SyntheticData:
    """A synthetic data set and its ground truth.

    Attributes
    ----------
    X : numpy.ndarray
        Shape ``(n, d)``, float32; the columns of each group are contiguous,
        genuine groups first, the spurious group (if any) last.
    y : numpy.ndarray
        Shape ``(n,)``, float32 in ``{0, 1}``.
    feature_names : list of str
        ``d`` names: ``genuine_{k}_{j}`` and ``spurious_{j}``.
    groups : dict of str to list of str
        Group name -> its feature names, in column order.
    ground_truth : GroundTruth
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    groups: dict[str, list[str]]
    ground_truth: GroundTruth = field(repr=False)

    def __len__(self) -> int:
        return self.X.shape[0]

    def spec(self) -> FeatureSpec:
        """``FeatureSpec(feature_names, groups)``."""
        return FeatureSpec(self.feature_names, self.groups)

    def to_frame(self) -> pd.DataFrame:
        """DataFrame with the ``d`` feature columns and a ``label`` column (float32)."""
        frame = pd.DataFrame(self.X, columns=self.feature_names)
        frame["label"] = self.y
        return frame


def _sum_sq(x32: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x32.astype(np.float64), x32.astype(np.float64))


def _genuine(
    rng: np.random.Generator, n: int, n_groups: int, group_dim: int
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, list[str]]]:
    x = rng.standard_normal((n, n_groups * group_dim)).astype(np.float32)
    y = _sum_sq(x) > n_groups * group_dim
    names = [f"genuine_{k}_{j}" for k in range(n_groups) for j in range(group_dim)]
    groups = {f"genuine_{k}": names[k * group_dim : (k + 1) * group_dim] for k in range(n_groups)}
    return x, y, names, groups


def _draw_conditioned(rng: np.random.Generator, target: np.ndarray, group_dim: int) -> np.ndarray:
    """Standard-normal ``(n, group_dim)`` rows conditioned on ``Q > k`` / ``Q <= k``.

    ``target`` holds 1 (draw given ``Q > k``), 0 (given ``Q <= k``) or -1
    (unconditioned). A standard normal vector is ``U * sqrt(Q)`` with ``U``
    uniform on the sphere and ``Q ~ chi2(k)`` independent, so the conditional
    law is ``U * sqrt(Q)`` with ``Q`` drawn from the truncated chi-square by
    inverse CDF: ``Q = F^-1(lo + V (hi - lo))``, ``V ~ U[0, 1)``. The
    truncation points sit ``1e-6 * k`` away from ``k`` so that float32
    rounding of ``X`` (relative error of ``Q`` below ``2.4e-7``) can never
    move a row across the threshold; this moves a probability mass of about
    ``1e-6 * k * pdf(k) ~= 3e-7 * sqrt(k)`` (``9e-7`` for ``k = 10``).
    """
    k = group_dim
    f_lo = stats.chi2.cdf(k * (1 - _MARGIN), k)
    f_hi = stats.chi2.cdf(k * (1 + _MARGIN), k)
    lo = np.where(target == 1, f_hi, 0.0)
    hi = np.where(target == 0, f_lo, 1.0)
    v = rng.random(target.shape[0])
    q = np.minimum(lo + v * (hi - lo), np.nextafter(1.0, 0.0))
    radius = np.sqrt(stats.chi2.ppf(q, k))
    direction = rng.standard_normal((target.shape[0], k))
    norms = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norms, out=np.zeros_like(direction), where=norms > 0)
    return (direction * radius[:, None]).astype(np.float32)


def _assemble(
    x: np.ndarray,
    spurious: np.ndarray,
    y: np.ndarray,
    names: list[str],
    groups: dict[str, list[str]],
    truth: GroundTruth,
) -> SyntheticData:
    """Append the spurious group (last columns) to the genuine data."""
    sp_names = [f"{SPURIOUS}_{j}" for j in range(spurious.shape[1])]
    x_all = np.concatenate([x, spurious], axis=1)
    return SyntheticData(
        x_all, y.astype(np.float32), names + sp_names, {**groups, SPURIOUS: sp_names}, truth
    )


def _check_sizes(n_samples: int, n_groups: int, group_dim: int) -> tuple[int, int, int]:
    return (
        check_int(n_samples, name="n_samples", minimum=1),
        check_int(n_groups, name="n_groups", minimum=1),
        check_int(group_dim, name="group_dim", minimum=1),
    )


def _rule(label: str, k: int, which: str) -> str:
    return f"{label} = 1 if the sum of squares of the {k} {which} features > {k} (its expectation), else 0"


def _genuine_rule(n_groups: int, group_dim: int) -> str:
    which = f"genuine (groups genuine_0..genuine_{n_groups - 1})"
    return _rule("genuine label", n_groups * group_dim, which)


def _bias_rule(group_dim: int) -> str:
    return _rule("bias label", group_dim, f"'{SPURIOUS}'")


def make_multifeature(
    n_samples: int = 1000,
    *,
    n_groups: int = 5,
    group_dim: int = 10,
    random_state: RandomState = 0,
) -> SyntheticData:
    """Independent standard-normal feature groups and a label that needs all of them.

    The notebook's ``generate_multifeature_data``: ``X`` is ``n_groups`` groups
    of ``group_dim`` i.i.d. N(0, 1) features, and
    ``y = 1[sum_j X[:, j]**2 > n_groups * group_dim]``. The threshold is the
    expectation of the sum of squares (the notebook used half of it, which makes
    99.8 % of the labels 1; see the module docstring), so
    ``P(y = 1) = P(chi2(n_groups * group_dim) > n_groups * group_dim)``,
    0.473 with the defaults.

    Parameters
    ----------
    n_samples, n_groups, group_dim : int
        ``n``, number of groups and features per group (each ``>= 1``).
    random_state : int, numpy.random.Generator or None
        Seed; the same int gives the same data.

    Returns
    -------
    SyntheticData
        ``X`` ``(n, n_groups * group_dim)``, groups ``genuine_0 ..``,
        features ``genuine_{k}_{j}``, no spurious group.
    """
    n, g, k = _check_sizes(n_samples, n_groups, group_dim)
    rng = check_random_state(random_state)
    x, y, names, groups = _genuine(rng, n, g, k)
    truth = GroundTruth(
        spurious_group=None,
        bias_strength=0.0,
        genuine_groups=list(groups),
        label_rule=f"y = {_genuine_rule(g, k)}",
    )
    return SyntheticData(x, y.astype(np.float32), names, groups, truth)


def make_biased(
    n_samples: int = 1000,
    *,
    n_groups: int = 5,
    group_dim: int = 10,
    bias_strength: float = 0.8,
    random_state: RandomState = 0,
) -> SyntheticData:
    """Training data with a planted spurious group that shortcuts the label.

    The notebook's ``generate_biased_data``: genuine groups as in
    :func:`make_multifeature` with genuine label ``g``, plus a group
    ``"spurious"`` of ``group_dim`` N(0, 1) features (columns
    ``spurious_{j}``, last) with bias label
    ``b = 1[sum_j spurious_j**2 > group_dim]`` (the notebook used
    ``group_dim / 2``; see the module docstring). The label is ``y = b`` with
    probability ``bias_strength`` and ``y = g`` otherwise, independently per
    row. Hence ``P(y = b) = s + (1 - s) * P(g = b)``, where ``b`` and ``g``
    are independent.

    Parameters
    ----------
    n_samples, n_groups, group_dim : int
        ``n``, number of genuine groups and features per group (each ``>= 1``).
    bias_strength : float
        ``s`` in ``[0, 1]``.
    random_state : int, numpy.random.Generator or None
        Seed; the same int gives the same data.

    Returns
    -------
    SyntheticData
        ``X`` ``(n, (n_groups + 1) * group_dim)``; ground truth names the
        spurious group and ``bias_strength``.
    """
    n, g, k = _check_sizes(n_samples, n_groups, group_dim)
    s = check_float(bias_strength, name="bias_strength", low=0.0, high=1.0)
    rng = check_random_state(random_state)
    x, y_genuine, names, groups = _genuine(rng, n, g, k)
    spurious = rng.standard_normal((n, k)).astype(np.float32)
    bias = _sum_sq(spurious) > k
    y = np.where(rng.random(n) < s, bias, y_genuine)
    rule = f"y = bias label with probability {s}, else the genuine label; {_bias_rule(k)}; {_genuine_rule(g, k)}"
    return _assemble(x, spurious, y, names, groups, GroundTruth(SPURIOUS, s, list(groups), rule))


def make_shifted(
    n_samples: int = 1000,
    *,
    n_groups: int = 5,
    group_dim: int = 10,
    bias_strength: float = 0.8,
    mode: str = "independent",
    random_state: RandomState = 0,
) -> SyntheticData:
    """Held-out data where the spurious link of :func:`make_biased` is broken.

    Same columns as :func:`make_biased`, but ``y`` is always the genuine
    label, so a model that learned the shortcut loses accuracy here while one
    that uses the genuine groups does not.

    * ``mode="independent"``: the spurious group is N(0, 1), independent of
      ``y`` (``bias_strength`` is not used; the ground truth records 0.0).
    * ``mode="reversed"``: with probability ``s = bias_strength`` (per row)
      the spurious group is drawn from N(0, I) *conditioned on* its bias label
      being ``1 - y``; otherwise it is unconditioned N(0, I). Then
      ``P(b = 1 - y) = s + (1 - s) * P(b = 1 - y | unconditioned)``.

    The conditional draw is exact and vectorised: a direction uniform on the
    sphere times ``sqrt(Q)``, with ``Q`` from the chi-square(``group_dim``)
    law truncated to ``Q > group_dim`` or ``Q <= group_dim`` by inverse CDF
    (up to a margin of ``1e-6 * group_dim`` around the threshold, so that
    float32 rounding cannot flip a bias label).

    Parameters
    ----------
    n_samples, n_groups, group_dim : int
        ``n``, number of genuine groups and features per group (each ``>= 1``).
    bias_strength : float
        ``s`` in ``[0, 1]``.
    mode : {"independent", "reversed"}
    random_state : int, numpy.random.Generator or None
        Seed; the same int gives the same data.

    Returns
    -------
    SyntheticData
        ``X`` ``(n, (n_groups + 1) * group_dim)``; ``ground_truth.shift`` is ``mode``.
    """
    n, g, k = _check_sizes(n_samples, n_groups, group_dim)
    s = check_float(bias_strength, name="bias_strength", low=0.0, high=1.0)
    mode = check_option(mode, name="mode", options=("independent", "reversed"))
    rng = check_random_state(random_state)
    x, y, names, groups = _genuine(rng, n, g, k)
    if mode == "independent":
        spurious = rng.standard_normal((n, k)).astype(np.float32)
        link = f"the '{SPURIOUS}' group is N(0, I) independent of y"
        s = 0.0
    else:
        flip = rng.random(n) < s
        target = np.where(flip, 1 - y.astype(np.int64), -1)
        spurious = _draw_conditioned(rng, target, k)
        link = (
            f"with probability {s} the '{SPURIOUS}' group is N(0, I) conditioned on "
            "bias label = 1 - y, else N(0, I)"
        )
    rule = f"y = {_genuine_rule(g, k)}; {link}; {_bias_rule(k)}"
    return _assemble(
        x, spurious, y, names, groups, GroundTruth(SPURIOUS, s, list(groups), rule, mode)
    )
