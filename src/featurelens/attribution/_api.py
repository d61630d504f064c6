"""``featurelens.attribute``: the one entry point of every attribution method."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from featurelens.attribution import _gradient, _perturbation, _shapley, _structural
from featurelens.attribution._explanation import Explanation
from featurelens.attribution._problem import build_problem
from featurelens.data import FeatureSpec
from featurelens.models import preserve_model

#: method name -> implementation taking (problem, **options); each module registers its own
METHODS: dict[str, Callable[..., Explanation]] = {
    **_perturbation.METHODS,
    **_gradient.METHODS,
    **_shapley.METHODS,
    **_structural.METHODS,
}


def _options_of(fn: Callable) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]


def method_options(method: str, given: dict | None = None) -> list[str]:
    """Names of the options ``method`` accepts (its keyword-only parameters).

    With ``given`` (options already chosen), only those that apply alongside
    them, for methods whose options depend on each other (e.g. smoothgrad's
    integrated-gradients options need ``base="integrated_gradients"``); the
    sizes in ``given`` (``n_repeats``, ``n_steps``, ``max_steps``,
    ``n_samples``, ``n_permutations``) are checked against the method's caps
    at once, so a caller can refuse an absurd request before loading
    anything (``ValueError``, as :func:`attribute` would raise later).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    check_sizes = getattr(METHODS[method], "check_sizes", None)
    if given is not None and check_sizes is not None:
        check_sizes(given)
    options = _options_of(METHODS[method])
    applicable = getattr(METHODS[method], "applicable_options", None)
    return applicable(options, given) if applicable is not None and given is not None else options


def attribute(
    model: nn.Module,
    X: Any,
    *,
    method: str,
    target: int | tuple[int, ...] | str | None = None,
    groups: Mapping[str, list] | FeatureSpec | None = None,
    baselines: Any = None,
    random_state: Any = 0,
    batch_size: int | None = None,
    feature_names: list[str] | None = None,
    output: int | None = None,
    link: str | None = None,
    progress: bool = False,
    **options: Any,
) -> Explanation:
    """Attribute a model's output to its input features or feature groups.

    Parameters
    ----------
    model : torch.nn.Module
        Any module mapping a batch of inputs to outputs. It is evaluated in
        eval mode; its mode, ``requires_grad`` flags, device, dtype and
        weights are left as they were, also when an error is raised.
    X : Tensor, ndarray or DataFrame
        ``(n, d)`` tabular rows or ``(n, T, d)`` sequences; cast to the
        model's device and floating dtype. DataFrame columns name the features.
    method : str
        One of ``featurelens.attribution.METHODS``: perturbation
        (``"ablation"``, ``"permutation"``), gradients (``"saliency"``,
        ``"input_x_gradient"``, ``"integrated_gradients"``, ``"smoothgrad"``),
        Shapley values (``"shapley"`` exact, ``"shapley_sampling"``) and
        weight-based scores (``"weights"``, ``"weights_x_std"``,
        ``"edge_scores"``, which need no target). Definitions: docs/attribution.md,
        docs/gradients.md, docs/shapley.md, docs/edge_scores.md.
    target : int, tuple of int, "all" or None
        Which output to explain (see :class:`featurelens.models.OutputSelector`).
        ``"all"`` explains every output at once; values gain a trailing axis.
    groups : mapping or FeatureSpec, optional
        Named groups of features (names or indices over the last axis).
        With groups, values are ``(n, n_groups)``; without, each feature is
        one player and values are ``(n, d)`` (for sequences a feature covers
        all its time steps).
    baselines : None, "zeros", "mean", "median", number or array
        Replacement values for ablation (see ``resolve_baselines``);
        ``"mean"``/``"median"`` need ``background=`` (the training data).
    random_state : int, numpy Generator or None
        Seed of every random choice (permutations).
    batch_size : int, optional
        Rows per model call. Default: 1024 per torch thread on CPU, 65536 on CUDA, divided by
        the sequence length for sequence inputs.
    feature_names : list of str, optional
        Overrides DataFrame columns / the default names ``x0..``.
    output : int, optional
        Element of a tuple-returning model's output.
    link : {"identity", "sigmoid", "softmax", "logit"}, optional
        Transform applied to the model output before the target is selected.
    progress : bool
        Show rich progress bars on stderr.
    **options
        Method options (``method_options(method)`` lists them), e.g.
        ``background`` (ablation, IG, Shapley, weights_x_std); ``n_repeats``,
        ``labels``, ``metric``, ``higher_is_better`` (permutation); ``n_steps``,
        ``rule``, ``tolerance`` (integrated gradients); ``n_samples``,
        ``noise_level``, ``base`` (smoothgrad); ``max_background`` (averaging
        methods); ``n_permutations`` (shapley_sampling); ``eps`` (edge_scores).
        An option the method does not take raises ``TypeError``.

    Returns
    -------
    Explanation
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    impl = METHODS[method]
    accepted = _options_of(impl)
    unknown = sorted(set(options) - set(accepted) - {"baselines", "random_state"})
    if unknown:
        raise TypeError(
            f"method {method!r} got unexpected option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts {', '.join(map(repr, accepted)) or 'no options'}"
        )
    if baselines is not None:
        if "baselines" not in accepted:
            raise ValueError(f"method {method!r} takes no baselines")
        options["baselines"] = baselines
    if "random_state" in accepted:
        options["random_state"] = random_state
    with preserve_model(model, eval_mode=True):
        problem = build_problem(
            model,
            X,
            groups=groups,
            feature_names=feature_names,
            target=target,
            output=output,
            link=link,
            batch_size=batch_size,
            progress=progress,
            require_target=not getattr(impl, "target_free", False),
        )
        return impl(problem, **options)


#: baselines that are statistics of, or draws from, a background sample
BACKGROUND_BASELINES = ("mean", "median", "background")


def route_options(
    methods: Sequence[str],
    *,
    options: Mapping[str, Any] | None = None,
    baselines: Any = None,
    background: Any = None,
    max_background: int | None = None,
    y: Any = None,
    metric: Any = None,
    n_repeats: int = 5,
) -> dict[str, dict[str, Any]]:
    """Give each method the shared options it accepts: the one routing of ``attribute`` and ``compare`` callers.

    Parameters
    ----------
    methods : sequence of str
        Names from :data:`METHODS`.
    options : mapping, optional
        Method options (e.g. the CLI's ``--option KEY=VALUE``); each key goes to every method
        that accepts it (:func:`method_options` with these options given); a key that no method
        accepts is a ``ValueError``.
    baselines : optional
        Goes to every method with a ``baselines`` option, unless ``options`` sets it.
    background : optional
        Goes to methods with a ``background`` option whose baseline is one of
        :data:`BACKGROUND_BASELINES` (a statistic of, or draws from, the background).
    max_background : int, optional
        Goes to methods with a ``max_background`` option whose baseline is ``"background"``.
    y, metric : optional
        Go to the methods that accept them (permutation importance), when given.
    n_repeats : int, default 5
        Goes to the methods that accept it (permutation importance).

    Returns
    -------
    dict of str to dict
        ``{method: {option: value}}`` for every method, ready for ``attribute(..., **options)``.
    """
    extra = dict(options or {})
    accepts = {m: set(method_options(m, given=extra)) for m in methods}
    for key in extra:
        if not any(key in a for a in accepts.values()):
            raise ValueError(f"option {key}=... is not an option of {', '.join(methods)}")
    routed: dict[str, dict[str, Any]] = {}
    for m in methods:
        kw = {k: v for k, v in extra.items() if k in accepts[m]}
        if "baselines" in accepts[m] and baselines is not None:
            kw.setdefault("baselines", baselines)
        base = kw.get("baselines")
        if background is not None and "background" in accepts[m] and isinstance(base, str) \
                and base in BACKGROUND_BASELINES:
            kw.setdefault("background", background)
        if max_background is not None and "max_background" in accepts[m] and isinstance(base, str) \
                and base == "background":
            kw.setdefault("max_background", max_background)
        for key, value in (("y", y), ("metric", metric), ("n_repeats", n_repeats)):
            if value is not None and key in accepts[m]:
                kw[key] = value
        routed[m] = kw
    return routed
