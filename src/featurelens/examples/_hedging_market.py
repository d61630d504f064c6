"""Markets for the deep-hedging example: seeded GBM and Heston paths, Black–Scholes formulas.

Prices are per unit of the underlier (``s0 = 1`` by default), times in years and
rates continuously compounded. All paths of one call are drawn at once from a NumPy
``Generator`` (vectorised over paths; Heston loops over the time steps only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from featurelens._validation import (
    RandomState,
    check_float,
    check_int,
    check_option,
    check_random_state,
)

MODELS = ("gbm", "heston")


@dataclass(frozen=True)
class Paths:
    """Simulated paths.

    Attributes
    ----------
    spot : Tensor, shape (n_paths, n_steps + 1)
        Underlier price at ``t_k = k · dt``, ``k = 0 … n_steps``.
    variance : Tensor, shape (n_paths, n_steps + 1)
        Instantaneous variance used over ``[t_k, t_{k+1})`` (GBM: ``sigma²``
        everywhere; Heston: the truncated variance ``max(V_k, 0)``).
    dt : float
        Step length in years.
    """

    spot: torch.Tensor
    variance: torch.Tensor
    dt: float

    @property
    def n_paths(self) -> int:
        return int(self.spot.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.spot.shape[1]) - 1

    @property
    def maturity(self) -> float:
        return self.n_steps * self.dt


@dataclass(frozen=True)
class Market:
    """A GBM or Heston market and the grid it is simulated on.

    GBM: ``dS = mu S dt + sigma S dW``, simulated exactly in log space.
    Heston: ``dS = mu S dt + sqrt(V) S dW1``, ``dV = kappa (theta − V) dt + xi sqrt(V) dW2``,
    ``corr(dW1, dW2) = rho``, ``V_0 = v0`` (``theta`` when ``None``), simulated with the
    *full-truncation Euler* scheme (Lord, Koekkoek & van Dijk 2010):
    ``V_{k+1} = V_k + kappa (theta − V_k⁺) dt + xi sqrt(V_k⁺ dt) Z2`` and the log-Euler step
    ``S_{k+1} = S_k exp((mu − V_k⁺/2) dt + sqrt(V_k⁺ dt) Z1)`` with ``V⁺ = max(V, 0)``
    (pfhedge uses Andersen's QE scheme instead; both converge to the same law as dt → 0).
    The log-Euler step keeps ``E[S_T] = s0 · exp(mu T)`` exact for both models.
    """

    model: str = "gbm"
    s0: float = 1.0
    mu: float = 0.0
    sigma: float = 0.2
    kappa: float = 1.0
    theta: float = 0.04
    xi: float = 0.2
    rho: float = -0.7
    v0: float | None = None
    maturity: float = 20 / 250
    n_steps: int = 20

    def __post_init__(self) -> None:
        check_option(self.model, name="model", options=MODELS)
        check_float(self.s0, name="s0", low=0.0, inclusive=(False, True))
        check_float(self.mu, name="mu")
        check_float(self.sigma, name="sigma", low=0.0, inclusive=(False, True))
        check_float(self.kappa, name="kappa", low=0.0)
        check_float(self.theta, name="theta", low=0.0, inclusive=(False, True))
        check_float(self.xi, name="xi", low=0.0)
        check_float(self.rho, name="rho", low=-1.0, high=1.0)
        if self.v0 is not None:
            check_float(self.v0, name="v0", low=0.0)
        check_float(self.maturity, name="maturity", low=0.0, inclusive=(False, True))
        check_int(self.n_steps, name="n_steps", minimum=1)

    @property
    def dt(self) -> float:
        return self.maturity / self.n_steps

    @property
    def reference_vol(self) -> float:
        """``sigma`` (GBM) or ``sqrt(theta)`` (Heston): the volatility used to scale features."""
        return self.sigma if self.model == "gbm" else math.sqrt(self.theta)

    def simulate(self, n_paths: int, *, random_state: RandomState = 0,
                 dtype: torch.dtype = torch.float32) -> Paths:
        """Draw ``n_paths`` paths (see :func:`simulate_gbm` and :func:`simulate_heston`)."""
        if self.model == "gbm":
            return simulate_gbm(n_paths, s0=self.s0, mu=self.mu, sigma=self.sigma, maturity=self.maturity,
                                n_steps=self.n_steps, random_state=random_state, dtype=dtype)
        return simulate_heston(n_paths, s0=self.s0, mu=self.mu, kappa=self.kappa, theta=self.theta,
                               xi=self.xi, rho=self.rho, v0=self.v0, maturity=self.maturity,
                               n_steps=self.n_steps, random_state=random_state, dtype=dtype)


def simulate_gbm(n_paths: int, *, s0: float = 1.0, mu: float = 0.0, sigma: float = 0.2,
                 maturity: float = 20 / 250, n_steps: int = 20, random_state: RandomState = 0,
                 dtype: torch.dtype = torch.float32) -> Paths:
    """Exact GBM paths: ``S_{k+1} = S_k exp((mu − sigma²/2) dt + sigma sqrt(dt) Z_k)``.

    Returns :class:`Paths` with ``spot`` of shape ``(n_paths, n_steps + 1)`` starting at
    ``s0`` and constant ``variance = sigma²``. Computed in float64, returned in ``dtype``.
    """
    n_paths = check_int(n_paths, name="n_paths", minimum=1)
    market = Market("gbm", s0=s0, mu=mu, sigma=sigma, maturity=maturity, n_steps=n_steps)
    rng = check_random_state(random_state)
    dt = market.dt
    z = rng.standard_normal((n_paths, n_steps))
    steps = (mu - 0.5 * sigma**2) * dt + sigma * math.sqrt(dt) * z
    log_s = np.concatenate([np.zeros((n_paths, 1)), np.cumsum(steps, axis=1)], axis=1)
    spot = s0 * np.exp(log_s)
    variance = np.full_like(spot, sigma**2)
    return Paths(torch.as_tensor(spot, dtype=dtype), torch.as_tensor(variance, dtype=dtype), dt)


def simulate_heston(n_paths: int, *, s0: float = 1.0, mu: float = 0.0, kappa: float = 1.0,
                    theta: float = 0.04, xi: float = 0.2, rho: float = -0.7, v0: float | None = None,
                    maturity: float = 20 / 250, n_steps: int = 20, random_state: RandomState = 0,
                    dtype: torch.dtype = torch.float32) -> Paths:
    """Heston paths by full-truncation Euler (variance) and log-Euler (spot); see :class:`Market`.

    ``variance`` holds the truncated ``max(V_k, 0)``, the value that drives the step
    ``k → k+1``. Computed in float64, returned in ``dtype``.
    """
    n_paths = check_int(n_paths, name="n_paths", minimum=1)
    market = Market("heston", s0=s0, mu=mu, kappa=kappa, theta=theta, xi=xi, rho=rho, v0=v0,
                    maturity=maturity, n_steps=n_steps)
    rng = check_random_state(random_state)
    dt = market.dt
    z1 = rng.standard_normal((n_paths, n_steps))
    z2 = rho * z1 + math.sqrt(1.0 - rho**2) * rng.standard_normal((n_paths, n_steps))
    v = np.empty((n_paths, n_steps + 1))
    log_s = np.zeros((n_paths, n_steps + 1))
    v[:, 0] = theta if v0 is None else v0
    for k in range(n_steps):
        vp = np.maximum(v[:, k], 0.0)
        v[:, k + 1] = v[:, k] + kappa * (theta - vp) * dt + xi * np.sqrt(vp * dt) * z2[:, k]
        log_s[:, k + 1] = log_s[:, k] + (mu - 0.5 * vp) * dt + np.sqrt(vp * dt) * z1[:, k]
    spot = s0 * np.exp(log_s)
    return Paths(torch.as_tensor(spot, dtype=dtype), torch.as_tensor(np.maximum(v, 0.0), dtype=dtype), dt)


def _d1_d2(spot: torch.Tensor, strike: float, tau: torch.Tensor, sigma: torch.Tensor,
           rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    vol = sigma * torch.sqrt(tau)
    d1 = (torch.log(spot / strike) + (rate + 0.5 * sigma**2) * tau) / vol
    return d1, d1 - vol


def _norm_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _as_tensors(spot, tau, sigma) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(spot, dtype=torch.float64) if not isinstance(spot, torch.Tensor) else spot
    t = torch.as_tensor(tau, dtype=s.dtype, device=s.device)
    v = torch.as_tensor(sigma, dtype=s.dtype, device=s.device)
    if bool((t <= 0).any()):
        raise ValueError("tau (time to maturity) must be > 0")
    if bool((v <= 0).any()):
        raise ValueError("sigma must be > 0")
    if bool((s <= 0).any()):
        raise ValueError("spot must be > 0")
    return s, t, v


def bs_call_price(spot, strike: float, tau, sigma, *, rate: float = 0.0) -> torch.Tensor:
    """Black–Scholes price of a European call: ``S N(d1) − K e^{−r tau} N(d2)``.

    ``d1 = (log(S/K) + (r + sigma²/2) tau) / (sigma sqrt(tau))``, ``d2 = d1 − sigma sqrt(tau)``.
    ``spot``, ``tau`` and ``sigma`` broadcast (tensors or numbers; numbers give float64).
    """
    s, t, v = _as_tensors(spot, tau, sigma)
    d1, d2 = _d1_d2(s, strike, t, v, rate)
    return s * _norm_cdf(d1) - strike * torch.exp(-rate * t) * _norm_cdf(d2)


def bs_call_delta(spot, strike: float, tau, sigma, *, rate: float = 0.0) -> torch.Tensor:
    """Black–Scholes delta of a European call, ``∂C/∂S = N(d1)`` (arguments as :func:`bs_call_price`)."""
    s, t, v = _as_tensors(spot, tau, sigma)
    d1, _ = _d1_d2(s, strike, t, v, rate)
    return _norm_cdf(d1)
