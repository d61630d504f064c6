"""Well-defined information measures for continuous activations.

Inputs are ``(n, k)`` tensors or arrays; sequences ``(n, T, k)`` are
flattened to ``(n * T, k)``. Entropies are in nats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.spatial
import scipy.special

from featurelens._validation import check_int
from featurelens.representation._spectrum import as_matrix


def linear_cka(a: Any, b: Any) -> float:
    """Linear centred kernel alignment between two representations (Kornblith et al. 2019).

    With column-centred ``X`` ``(n, k1)`` and ``Y`` ``(n, k2)`` (the same
    ``n`` samples, e.g. two layers)::

        CKA(X, Y) = ||Y^T X||_F**2 / (||X^T X||_F * ||Y^T Y||_F)

    In ``[0, 1]``; 1 for ``CKA(X, X)``; invariant to orthogonal transforms
    and isotropic scaling of either representation (not to arbitrary
    invertible linear maps). ``nan`` if either representation is constant.
    """
    x = as_matrix(a, name="a", min_rows=2)
    y = as_matrix(b, name="b", min_rows=2)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"a and b must have the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if den == 0:
        return float("nan")
    return float(np.linalg.norm(y.T @ x) ** 2 / den)


def binned_entropy(activations: Any, bins: int = 10) -> np.ndarray:
    """Per-unit plug-in entropy of an equal-width histogram, in nats.

    For unit ``i``, ``[min A[:, i], max A[:, i]]`` is cut into ``bins``
    equal-width bins with counts ``c_b``; ``H_i = -sum_b q_b log q_b`` with
    ``q_b = c_b / n``. This is a per-unit *marginal* estimate of a discrete
    entropy (between 0 and ``log(bins)``, 0 for a constant unit), not a joint
    entropy of the layer and not a differential entropy; it depends on
    ``bins`` and is biased low for small ``n``.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` entropies.
    """
    nb = check_int(bins, name="bins", minimum=1)
    x = as_matrix(activations)
    out = np.zeros(x.shape[1])
    for i in range(x.shape[1]):
        col = x[:, i]
        if col.max() == col.min():
            continue
        counts, _ = np.histogram(col, bins=nb, range=(col.min(), col.max()))
        q = counts[counts > 0] / col.size
        out[i] = float(-np.sum(q * np.log(q)))
    return out


def knn_entropy(activations: Any, k: int = 3) -> float:
    """Kozachenko–Leonenko k-nearest-neighbour estimate of differential entropy (nats).

    For ``N`` samples in ``d`` dimensions, with ``eps_r`` the Euclidean
    distance from sample ``r`` to its ``k``-th nearest other sample::

        H = psi(N) - psi(k) + log V_d + (d / N) * sum_r log eps_r,
        V_d = pi**(d/2) / Gamma(d/2 + 1)   (volume of the unit ball)

    (Kraskov, Stögbauer & Grassberger 2004, eq. 20). This is the *joint*
    differential entropy of all ``d`` units. Raises ``ValueError`` when a
    sample has ``k`` exact duplicates (``eps_r = 0``): add jitter or drop them.
    """
    kk = check_int(k, name="k", minimum=1)
    x = as_matrix(activations)
    n, d = x.shape
    if n <= kk:
        raise ValueError(f"knn_entropy needs more than k={kk} samples, got {n}")
    dist, _ = scipy.spatial.cKDTree(x).query(x, k=kk + 1)
    eps = dist[:, -1]
    if np.any(eps == 0):
        raise ValueError(f"activations hold {int(np.sum(eps == 0))} samples with k={kk} exact duplicates")
    log_vd = (d / 2) * np.log(np.pi) - scipy.special.gammaln(d / 2 + 1)
    return float(scipy.special.digamma(n) - scipy.special.digamma(kk) + log_vd + d * np.mean(np.log(eps)))
