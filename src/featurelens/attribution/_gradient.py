"""Gradient attributions: saliency, input × gradient, integrated gradients, SmoothGrad.

``f`` is the selected output (``problem.forward``), ``∇f`` its gradient with
respect to the input row. Without groups the values are input-shaped:
``(n, d)`` or ``(n, T, d)``, plus a trailing output axis for
``target="all"``. With groups, the values of a group's columns (at every time
step) are summed: ``(n, n_groups[, K])``. All methods run through
:func:`featurelens.attribution._ig.path_gradients` (chunks of at most
``batch_size`` rows, one forward and one backward per chunk) with parameter
gradients switched off, so no ``.grad`` is ever written to the model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featurelens._validation import check_float, check_int, check_option, check_random_state
from featurelens.attribution._baselines import resolve_background_sample, resolve_baselines
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._ig import (
    RULES,
    GradientFn,
    NoiseStream,
    UnitBuilder,
    Units,
    check_n_steps,
    path_gradients,
    quadrature,
)
from featurelens.attribution._problem import Problem
from featurelens.data import as_tensor
from featurelens.models import preserve_model

#: base methods SmoothGrad can average
BASES = ("saliency", "input_x_gradient", "integrated_gradients")
#: first n_steps tried by integrated gradients with ``tolerance=``
TOLERANCE_START = 16
#: n_steps cap of integrated gradients with ``tolerance=``
MAX_STEPS = 1024
#: most noisy copies of SmoothGrad (its noise averages out as 1/sqrt(n_samples); the copies are
#: generated and evaluated chunk by chunk)
MAX_NOISE_SAMPLES = 10_000
_ONE = np.ones(1)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


def _seed_record(random_state: Any) -> int | None:
    is_int = isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)
    return int(random_state) if is_int else None


def _finish(problem: Problem, values: torch.Tensor, *, method: str, params: dict, extras: dict) -> Explanation:
    """Input-shaped values, or summed per group, wrapped in an Explanation."""
    v = _np(values)
    all_targets = problem.selector.all_targets
    axes: tuple[str, ...] | None = None
    if problem.spec.has_groups:
        masks = problem.spec.masks().numpy().astype(np.float64)  # (G, d)
        n, d = v.shape[0], problem.x.shape[-1]
        k = v.shape[-1] if all_targets else 1
        v = np.einsum("ntdk,gd->ngk", v.reshape(n, -1, d, k), masks)
        v = v if all_targets else v[..., 0]
    else:
        time = ("time",) if problem.x.dim() == 3 else ()
        axes = ("sample", *time, "feature") + (("output",) if all_targets else ())
    return problem.explanation(v, method=method, params=params, axes=axes, extras=extras)


# -- references (baselines) -------------------------------------------------------------
@dataclass
class _Reference:
    """``b``: one row ``row`` (kind "row"), ``(n, *row)`` ("sample") or ``(m, *row)`` ("background")."""

    b: torch.Tensor
    kind: str
    desc: Any

    @property
    def m(self) -> int:
        return self.b.shape[0] if self.kind == "background" else 1


def _reference(problem: Problem, baselines: Any, background: Any, max_background: Any, rng: Any) -> _Reference:
    x = problem.x
    if isinstance(baselines, str) and baselines == "background":
        bg = resolve_background_sample(background, x, max_rows=max_background, random_state=rng)
        return _Reference(bg, "background", "background")
    if max_background is not None:
        raise ValueError("max_background= is used only with baselines='background'")
    if background is not None and not (isinstance(baselines, str) and baselines in ("mean", "median")):
        raise ValueError("background= is used only with baselines='mean', 'median' or 'background'")
    b, desc = resolve_baselines(baselines, x, background=background)
    if b.dim() == x.dim():
        return _Reference(b, "sample", desc)
    return _Reference(b.expand(tuple(x.shape[1:])), "row", desc)


def _builder(
    problem: Problem, ref: _Reference | None, noise: NoiseStream | None, copies: int
) -> tuple[int, UnitBuilder, float]:
    """Units ``u = (r·m + k)·n + i``: noisy copy ``r``, background row ``k``, sample ``i``."""
    x, n = problem.x, problem.n
    m = 1 if ref is None else ref.m
    if copies == 1 and m == 1 and noise is None:

        def plain(u0: int, u1: int) -> Units:
            b = None if ref is None else (ref.b[u0:u1] if ref.kind == "sample" else ref.b)
            return Units(x[u0:u1], b)

        return n, plain, 1.0

    def build(u0: int, u1: int) -> Units:
        u = torch.arange(u0, u1, device=x.device)
        i = u % n
        xu = x[i] if noise is None else noise.noisy(u // (m * n), i)
        if ref is None:
            b = None
        elif ref.kind == "background":
            b = ref.b[(u // n) % m]
        else:
            b = ref.b[i] if ref.kind == "sample" else ref.b
        return Units(xu, b, i)

    return copies * m * n, build, 1.0 / (copies * m)


def _check_steps(n_steps: Any, rule: str, default: int) -> int:
    steps = check_n_steps(default if n_steps is None else n_steps, rule)
    if rule == "riemann_trapezoid" and steps < 2:
        raise ValueError(f"rule='riemann_trapezoid' needs n_steps >= 2, got {steps}")
    return steps


def _check_noise_samples(n_samples: Any) -> int:
    n_samples = check_int(n_samples, name="n_samples", minimum=1)
    if n_samples > MAX_NOISE_SAMPLES:
        raise ValueError(f"n_samples={n_samples} exceeds the maximum of {MAX_NOISE_SAMPLES} noisy copies")
    return n_samples


def _rule_of(given: dict, default: str = "gausslegendre") -> str | None:
    rule = given.get("rule") or default
    return rule if isinstance(rule, str) and rule in RULES else None


def _ig_sizes(given: dict) -> None:
    """Size checks of integrated gradients' options alone (no data needed), for early refusal."""
    rule = _rule_of(given)
    if rule is None:
        return
    for name in ("n_steps", "max_steps"):
        if given.get(name) is not None:
            check_n_steps(given[name], rule, name=name)


def _smoothgrad_sizes(given: dict) -> None:
    """Size checks of smoothgrad's options alone (no data needed), for early refusal."""
    if given.get("n_samples") is not None:
        _check_noise_samples(given["n_samples"])
    rule = _rule_of(given)
    if rule is not None and given.get("n_steps") is not None:
        check_n_steps(given["n_steps"], rule)


# -- saliency and input × gradient ----------------------------------------------------------
def _local(problem: Problem, multiply: str, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    _, build, _ = _builder(problem, None, None, 1)
    with preserve_model(problem.model, eval_mode=True, freeze=True):
        values, out = path_gradients(
            problem, GradientFn(problem), n_units=problem.n, build=build, alphas=_ONE, weights=_ONE,
            multiply=multiply, keep_outputs=True, desc=desc,
        )
    assert out is not None
    return values, out


def saliency(problem: Problem, *, abs: bool = False) -> Explanation:
    """Gradient of the selected output with respect to the input.

    Definition: ``value[i] = ∇f(x_i)`` (signed), or ``|∇f(x_i)|``
    elementwise with ``abs=True`` (Captum's ``Saliency`` default). With
    groups, the (absolute) gradients of a group's columns are summed.
    ``extras["output"]`` holds ``f(x_i)``.
    """
    if not isinstance(abs, bool):
        raise TypeError(f"abs must be True or False, got {abs!r}")
    values, out = _local(problem, "none", "saliency")
    if abs:
        values = values.abs()
    return _finish(problem, values, method="saliency", params={"abs": abs}, extras={"output": _np(out)})


def input_x_gradient(problem: Problem) -> Explanation:
    """Input times gradient: ``value[i] = x_i ⊙ ∇f(x_i)``; groups sum their columns."""
    values, out = _local(problem, "input", "input x gradient")
    return _finish(problem, values, method="input_x_gradient", params={}, extras={"output": _np(out)})


# -- integrated gradients ---------------------------------------------------------------------
def _endpoints(problem: Problem, ref: _Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """``f(x_i)`` and ``f(b_i)`` (mean over background rows), both ``(n[, K])``, in one pass."""
    n = problem.n
    rows = ref.b.unsqueeze(0) if ref.kind == "row" else ref.b
    out = problem.forward_all(torch.cat([problem.x, rows]), desc="model outputs")
    fx, fb = out[:n], out[n:]
    if ref.kind != "sample":
        fb = fb.mean(dim=0, keepdim=True).expand_as(fx)
    return fx, fb


def _completeness(
    problem: Problem, values: torch.Tensor, fx: torch.Tensor, fb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed error ``Σ value_i − (f(x_i) − f(b_i))`` and the relative error of the docs."""
    cpu64 = {"device": "cpu", "dtype": torch.float64}  # also for devices without float64
    total = values.sum(dim=tuple(range(1, problem.x.dim()))).to(**cpu64)
    gap = fx.to(**cpu64) - fb.to(**cpu64)
    err = total - gap
    denom = torch.maximum(gap.abs(), gap.abs().mean(dim=0, keepdim=True))
    rel = torch.where(denom > 0, err.abs() / denom.clamp_min(torch.finfo(torch.float64).tiny), err.abs())
    return err, rel


def integrated_gradients(
    problem: Problem,
    *,
    n_steps: int | None = None,
    rule: str = "gausslegendre",
    baselines: Any = None,
    background: Any = None,
    max_background: int | None = None,
    tolerance: float | None = None,
    max_steps: int | None = None,
    random_state: Any = 0,
) -> Explanation:
    """Integrated gradients along the straight path from a baseline to each input.

    Definition: ``value[i] = (x_i − b) ⊙ Σ_s w_s ∇f(b + α_s (x_i − b))``
    with the nodes ``α_s`` and weights ``w_s`` of ``rule`` (see
    :func:`featurelens.attribution._ig.quadrature`). With
    ``baselines="background"`` and rows ``z_1..z_m`` of ``background``
    (a seeded subsample of ``max_background`` rows if given), the average
    ``value[i] = (1/m) Σ_k IG(x_i; z_k)`` (expected-gradients style, but
    deterministic: every row with the same quadrature).

    ``extras``: ``output`` ``f(x_i)``, ``baseline_output`` ``f(b)`` (the mean
    of ``f(z_k)`` for a background), ``completeness_error``
    ``e_i = Σ value_i − (f(x_i) − f(b))`` and ``relative_completeness_error``
    ``|e_i| / max(|gap_i|, mean_j |gap_j|)`` with ``gap = f(x) − f(b)``.

    With ``tolerance``, ``n_steps`` (default 16) is doubled up to
    ``max_steps`` (default 1024) until the largest relative completeness
    error is at most ``tolerance``; ``params["n_steps"]`` is the count used.
    If the cap is reached first, a ``UserWarning`` is issued and the
    ``max_steps`` result is returned with ``params["tolerance_met"] = False``.
    """
    rule = check_option(rule, name="rule", options=RULES)
    tol = None
    if tolerance is not None:
        tol = check_float(tolerance, name="tolerance", low=0.0, inclusive=(False, True))
    elif max_steps is not None:
        raise ValueError("max_steps= is used only with tolerance=")
    steps = _check_steps(n_steps, rule, TOLERANCE_START if tol is not None else 50)
    if tol is None:
        cap = steps
    else:
        cap = check_int(MAX_STEPS if max_steps is None else max_steps, name="max_steps", minimum=steps)
        cap = check_n_steps(cap, rule, name="max_steps")
    rng = check_random_state(random_state)
    ref = _reference(problem, baselines, background, max_background, rng)
    n_units, build, scale = _builder(problem, ref, None, 1)
    with preserve_model(problem.model, eval_mode=True, freeze=True):
        fx, fb = _endpoints(problem, ref)
        grad_fn = GradientFn(problem)
        while True:
            alphas, weights = quadrature(rule, steps)
            values, _ = path_gradients(
                problem, grad_fn, n_units=n_units, build=build, alphas=alphas, weights=weights,
                multiply="difference", scale=scale, desc=f"integrated gradients, {steps} steps",
            )
            err, rel = _completeness(problem, values, fx, fb)
            worst = float(rel.max())
            if tol is None or worst <= tol or steps >= cap:
                break
            steps = min(2 * steps, cap)
    params: dict[str, Any] = {"n_steps": steps, "rule": rule, "baselines": ref.desc}
    if ref.kind == "background":
        params.update(n_background=ref.m, max_background=max_background, random_state=_seed_record(random_state))
    if tol is not None:
        params.update(tolerance=tol, max_steps=cap, tolerance_met=worst <= tol)
        if worst > tol:
            warnings.warn(
                f"integrated_gradients: the largest relative completeness error is {worst:.3g} > "
                f"tolerance={tol:g} at max_steps={cap}; returning the {cap}-step result. Raise "
                "max_steps or the tolerance (kinks such as ReLU slow the convergence)",
                UserWarning,
                stacklevel=3,
            )
    extras = {
        "output": _np(fx),
        "baseline_output": _np(fb),
        "completeness_error": _np(err),
        "relative_completeness_error": _np(rel),
    }
    return _finish(problem, values, method="integrated_gradients", params=params, extras=extras)


# -- SmoothGrad -----------------------------------------------------------------------------------
def _feature_std(problem: Problem, background: Any) -> tuple[torch.Tensor, str]:
    """Return the population std (ddof=0) of each feature over rows and time steps of the inputs or background."""
    d = problem.x.shape[-1]
    if background is None:
        src, source = problem.x, "inputs"
        if problem.n < 2:
            raise ValueError("smoothgrad needs 2 or more input rows to measure each feature's std; pass background=")
    else:
        src, _ = as_tensor(background, name="background", dtype=torch.float64)
        source = "background"
        if src.shape[-1] != d:
            raise ValueError(f"background has {src.shape[-1]} features but the inputs have {d}")
    flat = src.detach().reshape(-1, d).to(device="cpu", dtype=torch.float64)
    return flat.std(dim=0, correction=0), source


def smoothgrad(
    problem: Problem,
    *,
    base: str = "saliency",
    n_samples: int = 50,
    noise_level: float = 0.1,
    background: Any = None,
    baselines: Any = None,
    n_steps: int | None = None,
    rule: str | None = None,
    max_background: int | None = None,
    random_state: Any = 0,
) -> Explanation:
    """SmoothGrad: the base method averaged over noisy copies of the inputs.

    Definition: ``value[i] = (1/R) Σ_r A(x_i + ε_ri)`` with ``R = n_samples``,
    ``A`` the base method (signed saliency, input × gradient of the noisy
    input, or integrated gradients from the unperturbed baseline to the noisy
    input) and ``ε_ri[t, j] ~ N(0, (noise_level · σ_j)²)`` independent, where
    ``σ_j`` is feature ``j``'s population standard deviation over all rows
    (and time steps) of ``background`` if given, else of the inputs. The
    noise is drawn on the CPU in float64 from a ``torch.Generator`` seeded by
    ``random_state``, so the same seed gives the same numbers for any
    ``batch_size``. ``n_steps``, ``rule``, ``baselines`` and
    ``max_background`` apply to ``base="integrated_gradients"`` only.

    Sizes: ``n_samples`` is at most :data:`MAX_NOISE_SAMPLES` (10 000); the
    noisy copies are generated and evaluated chunk by chunk, never all at once.
    """
    base = check_option(base, name="base", options=BASES)
    n_samples = _check_noise_samples(n_samples)
    noise_level = check_float(noise_level, name="noise_level", low=0.0)
    is_ig = base == "integrated_gradients"
    if not is_ig:
        given = {"baselines": baselines, "n_steps": n_steps, "rule": rule, "max_background": max_background}
        for name in IG_ONLY_OPTIONS:
            if given[name] is not None:
                raise ValueError(f"{name}= applies only to base='integrated_gradients', not base={base!r}")
    rng = check_random_state(random_state)
    if noise_level > 0:
        std, source = _feature_std(problem, background)
    else:
        std, source = torch.zeros(problem.x.shape[-1], dtype=torch.float64), "none"
    params: dict[str, Any] = {
        "base": base, "n_samples": n_samples, "noise_level": noise_level, "noise_std_from": source,
    }
    ref, alphas, weights, multiply = None, _ONE, _ONE, "none" if base == "saliency" else "input"
    if is_ig:
        rule = check_option("gausslegendre" if rule is None else rule, name="rule", options=RULES)
        steps = _check_steps(n_steps, rule, 50)
        uses_bg = isinstance(baselines, str) and baselines in ("mean", "median", "background")
        ref = _reference(problem, baselines, background if uses_bg else None, max_background, rng)
        alphas, weights = quadrature(rule, steps)
        multiply = "difference"
        params.update(n_steps=steps, rule=rule, baselines=ref.desc)
    noise = NoiseStream(problem.x, noise_level * std, int(rng.integers(2**63 - 1)))
    n_units, build, scale = _builder(problem, ref, noise, n_samples)
    with preserve_model(problem.model, eval_mode=True, freeze=True):
        values, _ = path_gradients(
            problem, GradientFn(problem), n_units=n_units, build=build, alphas=alphas, weights=weights,
            multiply=multiply, scale=scale, desc=f"smoothgrad ({base})",
        )
    params["random_state"] = _seed_record(random_state)
    return _finish(problem, values, method="smoothgrad", params=params, extras={"noise_std": _np(noise_level * std)})


#: method name -> implementation, merged into ``featurelens.attribution.METHODS``
#: smoothgrad options that apply only to its integrated-gradients base
IG_ONLY_OPTIONS = ("baselines", "n_steps", "rule", "max_background")


def _smoothgrad_applicable(options: list[str], given: dict) -> list[str]:
    """Return the options smoothgrad takes given the other options (its ``base``)."""
    if given.get("base", "saliency") == "integrated_gradients":
        return options
    return [o for o in options if o not in IG_ONLY_OPTIONS]


smoothgrad.applicable_options = _smoothgrad_applicable  # type: ignore[attr-defined]
smoothgrad.check_sizes = _smoothgrad_sizes  # type: ignore[attr-defined]
integrated_gradients.check_sizes = _ig_sizes  # type: ignore[attr-defined]

METHODS = {
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
}
