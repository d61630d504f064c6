"""``compare``: feature importance, its shifts, sparsity and weights across checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from torch import nn

from featurelens._protocol import html_table, jsonable
from featurelens._validation import check_int, check_random_state
from featurelens.attribution import METHODS, Explanation, attribute
from featurelens.attribution import method_options as _accepted
from featurelens.compare._sparsity import layer_sparsity, unpruned_weights, weight_stats
from featurelens.compare._stats import rank_correlations, top_shifts

DEFAULT_METHODS = ("weights", "edge_scores", "integrated_gradients", "permutation")


@dataclass(eq=False)
class Comparison:
    """What :func:`compare` found. Every table is a tidy DataFrame; :meth:`to_frame` is the main one.

    Attributes
    ----------
    models : list of str
        Model names in the order given; ``reference`` is one of them.
    reference : str
    methods : list of str
    feature_names : list of str
    explanations : dict
        ``explanations[model][method]``: the :class:`~featurelens.attribution.Explanation`.
    importance : DataFrame
        ``model, method, feature, importance, share, rank``: ``importance`` is
        ``Explanation.importance()``, ``share`` the same divided by the sum of its
        absolute values over the features (sums to 1 in absolute value; all zeros stay
        zero) and ``rank`` 1 = largest share (ties: average rank).
    differences : DataFrame
        ``model, method, feature, share, reference_share, difference`` for every model but
        the reference: ``difference = share − reference_share``.
    shifts : DataFrame
        ``model, method, direction ("gain"/"loss"), rank, feature, difference``: the
        ``n_top`` largest gains and losses of share against the reference.
    rank_correlation : DataFrame
        ``method, model_a, model_b, spearman, kendall`` over the features' shares.
    sparsity : DataFrame
        ``model, layer, n_weights, n_pruned, sparsity, pruned`` per layer weight (masks
        matched by exact parameter name) and a ``"total"`` row per model.
    weight_summary : DataFrame
        One row per model: ``n_weights`` (all layer weights), ``n_unpruned``, ``mean``,
        ``std``, ``mean_abs``, ``q05``, ``median``, ``q95`` of the unpruned weights.
    weights : dict of str to ndarray
        The unpruned weight values per model (see
        :func:`featurelens.compare.unpruned_weights`).
    settings : dict
        Options the comparison ran with (seed, targets given, method options).
    """

    models: list[str]
    reference: str
    methods: list[str]
    feature_names: list[str]
    explanations: dict[str, dict[str, Explanation]]
    importance: pd.DataFrame
    differences: pd.DataFrame
    shifts: pd.DataFrame
    rank_correlation: pd.DataFrame
    sparsity: pd.DataFrame
    weight_summary: pd.DataFrame
    weights: dict[str, np.ndarray] = field(repr=False)
    settings: dict[str, Any]

    #: the tables, by name (the keys of ``to_dict()`` and of the report's CSV files)
    TABLES: ClassVar[tuple[str, ...]] = ("importance", "differences", "shifts", "rank_correlation", "sparsity",
                                         "weight_summary")

    def to_frame(self) -> pd.DataFrame:
        """Return the main table, a copy of :attr:`importance` (``model, method, feature, importance, share, rank``)."""
        return self.importance.copy()

    def shares(self, method: str) -> pd.DataFrame:
        """Return importance shares of ``method``: features × models (in the features' order)."""
        if method not in self.methods:
            raise ValueError(f"method must be one of {', '.join(map(repr, self.methods))}; got {method!r}")
        block = self.importance[self.importance["method"] == method]
        wide = block.pivot(index="feature", columns="model", values="share")
        return wide.loc[self.feature_names, self.models]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict: names, settings and every table of :attr:`TABLES` as a list of records."""
        out: dict[str, Any] = {"models": self.models, "reference": self.reference, "methods": self.methods,
                               "features": self.feature_names, "settings": self.settings}
        for name in self.TABLES:
            out[name] = getattr(self, name).to_dict(orient="records")
        return jsonable(out, where="comparison")

    def _repr_html_(self) -> str:
        wide = self.importance.pivot_table(index="feature", columns=["method", "model"], values="share",
                                           sort=False).loc[self.feature_names]
        wide.columns = [f"{method}: {model}" for method, model in wide.columns]
        return html_table(wide, title=f"Comparison of {', '.join(self.models)} (reference {self.reference}): "
                          "importance shares")

    def __repr__(self) -> str:
        return (f"Comparison(models={self.models}, reference={self.reference!r}, methods={self.methods}, "
                f"n_features={len(self.feature_names)})")


def _check_models(models: Any) -> dict[str, nn.Module]:
    if not isinstance(models, Mapping):
        raise TypeError(f"models must be a dict of name to torch.nn.Module, got {type(models).__name__}")
    if len(models) < 2:
        raise ValueError(f"models must hold at least 2 models to compare, got {len(models)}")
    for name, model in models.items():
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"models: every name must be a non-empty str, got {name!r}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be a torch.nn.Module, got {type(model).__name__}")
    return dict(models)


def _check_methods(methods: Any, options: Any) -> tuple[list[str], dict[str, dict[str, Any]]]:
    if isinstance(methods, str):
        methods = (methods,)
    if not isinstance(methods, Sequence) or not methods:
        raise ValueError("methods must be a non-empty sequence of method names")
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: {m!r} is not a method; choose from {', '.join(METHODS)}")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise TypeError(f"method_options must be a dict of method name to options, got {type(options).__name__}")
    checked: dict[str, dict[str, Any]] = {}
    for m, opts in options.items():
        if m not in methods:
            raise ValueError(f"method_options: {m!r} is not one of the methods compared ({', '.join(methods)})")
        if not isinstance(opts, Mapping):
            raise TypeError(f"method_options[{m!r}] must be a dict of options, got {type(opts).__name__}")
        bad = sorted(set(opts) - set(_accepted(m)))
        if bad:
            raise ValueError(f"method_options[{m!r}]: {', '.join(map(repr, bad))} is not an option of {m!r}")
        checked[m] = dict(opts)
    return methods, checked


def compare(
    models: Mapping[str, nn.Module],
    X: Any,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    reference: str | None = None,
    feature_names: list[str] | None = None,
    y: Any = None,
    target: int | tuple[int, ...] | None = None,
    output: int | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    n_top: int = 3,
    random_state: Any = 0,
    batch_size: int | None = None,
    progress: bool = False,
) -> Comparison:
    """Compare the feature reliance, sparsity and weights of several models on the same inputs.

    For every model and method the importance of each feature is
    ``featurelens.attribute(model, inputs, method=...).importance()``; its *share*
    divides it by the sum of absolute importances over the features, so models of
    different output scale compare (the deep-hedging lottery-ticket study normalised
    ``Σ_j |W1_ji · M1_ji|`` the same way). Structural methods read the effective, mask-applied weights
    (``weight_orig * weight_mask``) of the input layer found by data flow, not "the
    first Linear by module order". Differences are shares minus the reference's;
    rank correlations are Spearman and Kendall (tau-b) over the features; sparsity
    and weight distributions come from the pruning masks matched to each layer by
    exact parameter name (see :func:`layer_sparsity`). Models are left as they were.

    Parameters
    ----------
    models : dict of str to nn.Module
        At least two models taking the same inputs (e.g. dense, ticket, robust ticket).
    X : Tensor, ndarray or DataFrame
        ``(n, d)`` or ``(n, T, d)`` rows every model is explained on.
    methods : sequence of str
        Attribution methods (names of ``featurelens.attribution.METHODS``).
    reference : str, optional
        Model the differences are taken against (default: the first).
    feature_names : list of str, optional
        Overrides DataFrame columns / ``x0..``.
    y : array-like, optional
        Labels (one per row): permutation importance then measures the metric's
        degradation; without them it measures the mean change of the output.
    target, output :
        Which output to explain for multi-output models (see :func:`featurelens.attribute`).
    method_options : dict, optional
        Extra options per method, e.g. ``{"integrated_gradients": {"baselines": "mean",
        "background": X}, "permutation": {"metric": "mse", "n_repeats": 10}}``.
    n_top : int
        Gainers and losers listed per model and method.
    random_state : int, Generator or None
        One seed is drawn from it and used for every model, so that the random choices
        (permutations) are the same for every model: differences are paired.
    batch_size : int, optional
    progress : bool

    Returns
    -------
    Comparison
    """
    nets = _check_models(models)
    names = list(nets)
    reference = names[0] if reference is None else reference
    if reference not in nets:
        raise ValueError(f"reference must be one of the model names {', '.join(map(repr, names))}; got {reference!r}")
    methods_l, options = _check_methods(methods, method_options)
    n_top = check_int(n_top, name="n_top", minimum=1)
    if target == "all":
        raise ValueError("target='all' explains every output separately; compare one output at a time")
    seed = int(check_random_state(random_state).integers(2**31 - 1))
    explanations: dict[str, dict[str, Explanation]] = {}
    rows = []
    features: list[str] | None = None
    for name, model in nets.items():
        explanations[name] = {}
        for method in methods_l:
            kw = dict(options.get(method, {}))
            if y is not None and "y" in _accepted(method):
                kw.setdefault("y", y)
            try:
                expl = attribute(model, X, method=method, target=target, output=output, random_state=seed,
                                 feature_names=feature_names, batch_size=batch_size, progress=progress, **kw)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"model {name!r}, method {method!r}: {exc}") from exc
            imp = expl.importance()
            if isinstance(imp, pd.DataFrame):
                raise ValueError(f"model {name!r}: the output has several elements; pick one with target=")
            share = expl.importance(normalize=True)
            features = list(imp.index) if features is None else features
            explanations[name][method] = expl
            for feat in imp.index:
                rows.append({"model": name, "method": method, "feature": str(feat), "importance": float(imp[feat]),
                             "share": float(share[feat])})
    assert features is not None
    importance = pd.DataFrame(rows)
    importance["rank"] = importance.groupby(["model", "method"], sort=False)["share"].rank(
        ascending=False, method="average")
    ref = importance[importance["model"] == reference].set_index(["method", "feature"])["share"]
    diff = importance[importance["model"] != reference][["model", "method", "feature", "share"]].copy()
    diff["reference_share"] = [ref[(m, f)] for m, f in zip(diff["method"], diff["feature"], strict=True)]
    diff["difference"] = diff["share"] - diff["reference_share"]
    diff = diff.reset_index(drop=True)
    sparsity = pd.concat([layer_sparsity(m).assign(model=n) for n, m in nets.items()], ignore_index=True)
    sparsity = sparsity[["model", "layer", "n_weights", "n_pruned", "sparsity", "pruned"]]
    weights = {n: unpruned_weights(m) for n, m in nets.items()}
    totals = sparsity[sparsity["layer"] == "total"].set_index("model")["n_weights"]
    summary = pd.DataFrame([{"model": n, **weight_stats(w, int(totals[n]))} for n, w in weights.items()])
    settings = {"seed": seed, "targets": y is not None, "target": target, "output": output, "n_top": n_top,
                "n_rows": len(X), "method_options": {m: sorted(o) for m, o in options.items()}}
    return Comparison(
        models=names, reference=reference, methods=methods_l, feature_names=features, explanations=explanations,
        importance=importance, differences=diff, shifts=top_shifts(diff, n_top),
        rank_correlation=rank_correlations(importance, names), sparsity=sparsity, weight_summary=summary,
        weights=weights, settings=settings,
    )
