"""The sweeps of the superposition and spurious-correlation notebook: capacity, scaling, variants.

Capacity vs superposition, width/depth scaling and architecture variants.

Each sweep trains small models on synthetic data with a fixed seed per
configuration and returns a :class:`SweepResult` with tidy data frames (one
row per configuration, and per layer where the sweep has layers); its figure
is :class:`featurelens.report.SweepDisplay`. Defaults run on two CPU cores in a
few minutes; every size is an argument.

Sequence form: the scale and architecture sweeps present each row of
:func:`~featurelens.datasets.make_biased` as ``G + 1`` tokens (one per group,
``group_dim`` features each, the spurious group last), so attention has
something to attend over; the capacity sweep uses the tabular form (one
token), as the notebook did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from featurelens._progress import progress_bar
from featurelens._protocol import html_table, jsonable
from featurelens._validation import RandomState, check_int, check_random_state
from featurelens.attribution import attribute
from featurelens.data import train_val_test_split
from featurelens.datasets import make_biased, make_multifeature, make_shifted
from featurelens.internals._summary import gradient_norms, layer_summary
from featurelens.internals.attention import attention_statistics, attention_weights
from featurelens.models import (
    GatedTransformer,
    HierarchicalTransformer,
    OutputSelector,
    ParallelTransformer,
    SmallTransformer,
    evaluate,
    logit_accuracy,
    train,
)
from featurelens.representation import group_overlap

ARCHITECTURES = {
    "small": SmallTransformer,
    "parallel": ParallelTransformer,
    "hierarchical": HierarchicalTransformer,
    "gated": GatedTransformer,
}


@dataclass(frozen=True)
class SweepResult:
    """Outcome of a sweep.

    Its report (CSV tables, figure, ``results.json``) is ``featurelens.report.save(result, out)``.

    Attributes
    ----------
    kind : str
        ``"capacity"``, ``"scale"`` or ``"architectures"``.
    table : pandas.DataFrame
        One row per configuration (columns documented by each sweep); :meth:`to_frame`.
    layers : pandas.DataFrame or None
        One row per configuration and layer (scale sweep).
    params : dict
        The sweep's arguments, for the record.
    models : dict
        Trained models by configuration key when ``keep_models=True``.
    """

    kind: str
    table: pd.DataFrame
    layers: pd.DataFrame | None = None
    params: dict[str, Any] = field(default_factory=dict)
    models: dict[Any, nn.Module] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Return the main table, a copy of :attr:`table` (one row per configuration)."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict: ``{"sweep": kind, "params", "table": [row, ...], "layers": [row, ...] | None}``."""
        return jsonable({"sweep": self.kind, "params": self.params, "table": self.table.to_dict(orient="records"),
                         "layers": None if self.layers is None else self.layers.to_dict(orient="records")},
                        where="sweep")

    def _repr_html_(self) -> str:
        return html_table(self.table, title=f"{self.kind} sweep: {len(self.table)} configurations")


def _sizes(values: Sequence[int], name: str, minimum: int = 1) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty sequence of ints, got {values!r}")
    return tuple(check_int(v, name=name, minimum=minimum) for v in values)


def _seeds(rng: np.random.Generator, n: int) -> list[int]:
    return [int(s) for s in rng.integers(0, 2**31 - 1, size=n)]


def _fit(build: Any, x: torch.Tensor, y: np.ndarray, *, epochs: int, seed: int) -> nn.Module:
    """``build()`` (initialised with ``seed``), trained with ``seed``, in eval mode; global RNG untouched."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build()
        train(model, x, y, loss="bce", epochs=epochs, train_batch_size=64, lr=3e-3, patience=5, random_state=seed)
    model.eval()
    return model


def _offdiag(m: pd.DataFrame) -> np.ndarray:
    a = m.to_numpy()
    return a[~np.eye(a.shape[0], dtype=bool)]


def capacity_sweep(
    *,
    n_groups: Sequence[int] = (2, 4, 8),
    hidden_dims: Sequence[int] = (4, 8, 16, 32),
    group_dim: int = 4,
    n_samples: int = 3000,
    epochs: int = 30,
    n_heads: int = 2,
    random_state: RandomState = 0,
    progress: bool = False,
    keep_models: bool = False,
) -> SweepResult:
    """Capacity vs superposition: feature groups × hidden width.

    For each ``(G, h)`` a one-layer :class:`~featurelens.models.SmallTransformer`
    of width ``h`` is trained on :func:`~featurelens.datasets.make_multifeature`
    (``G`` groups of ``group_dim`` features, a label that needs all of
    them; 60/20/20 split). The input layer ``input_proj`` writes the
    ``G * group_dim`` features into ``h`` dimensions.

    Returns
    -------
    SweepResult
        ``table`` columns: ``n_groups``, ``hidden_dim``, ``n_features``
        (``G * group_dim``), ``features_per_dim`` (``n_features / h``),
        ``overlap_mean`` / ``overlap_max``: mean / max off-diagonal entry of
        :func:`~featurelens.representation.group_overlap` on
        ``input_proj.weight`` (mean squared cosine of the principal angles
        between the groups' column spaces; the notebook sliced PCA loadings by
        input positions instead), ``effective_rank`` and ``interference`` of
        the ``input_proj`` output and of the encoder output
        (``encoder_effective_rank``, ``encoder_interference``),
        ``rank_per_group`` (``effective_rank / G``), ``test_accuracy``.
        When ``n_features > h`` the groups cannot have disjoint column spaces,
        so ``overlap_mean`` rises as ``h`` shrinks.
    """
    groups_list = _sizes(n_groups, "n_groups")
    widths = _sizes(hidden_dims, "hidden_dims")
    group_dim = check_int(group_dim, name="group_dim", minimum=1)
    n_samples = check_int(n_samples, name="n_samples", minimum=20)
    epochs = check_int(epochs, name="epochs", minimum=1)
    n_heads = check_int(n_heads, name="n_heads", minimum=1)
    bad = [h for h in widths if h % n_heads]
    if bad:
        raise ValueError(f"hidden_dims {bad} are not divisible by n_heads={n_heads}")
    rng = check_random_state(random_state)
    configs = [(g, h) for g in groups_list for h in widths]
    seeds = _seeds(rng, len(configs))
    rows, models = [], {}
    with progress_bar("capacity sweep", len(configs), enabled=progress) as advance:
        for (g, h), seed in zip(configs, seeds, strict=True):
            data = make_multifeature(n_samples, n_groups=g, group_dim=group_dim, random_state=seed)
            sp = train_val_test_split(data.X, data.y, random_state=seed)
            (x_tr, y_tr), (x_te, y_te) = sp.train, sp.test
            model = _fit(lambda g=g, h=h: SmallTransformer(g * group_dim, hidden_dim=h, n_heads=n_heads, n_layers=1,
                                                           dropout=0.0),
                         torch.as_tensor(x_tr), y_tr, epochs=epochs, seed=seed)
            x_te = torch.as_tensor(x_te)
            ov = _offdiag(group_overlap(model.input_proj.weight, data.groups, feature_names=data.feature_names))
            summ = layer_summary(model, x_te, modules=["input_proj", "transformer_layers.0"], random_state=seed)
            rows.append({
                "n_groups": g, "hidden_dim": h, "n_features": g * group_dim,
                "features_per_dim": g * group_dim / h,
                "overlap_mean": float(ov.mean()) if ov.size else float("nan"),  # NaN for one group
                "overlap_max": float(ov.max()) if ov.size else float("nan"),
                "effective_rank": float(summ.loc["input_proj", "effective_rank"]),
                "interference": float(summ.loc["input_proj", "interference"]),
                "encoder_effective_rank": float(summ.loc["transformer_layers.0", "effective_rank"]),
                "encoder_interference": float(summ.loc["transformer_layers.0", "interference"]),
                "rank_per_group": float(summ.loc["input_proj", "effective_rank"]) / g,
                "test_accuracy": logit_accuracy(model, x_te, y_te),
            })
            if keep_models:
                models[(g, h)] = model
            advance(info=f"G={g} h={h}")
    params = {"n_groups": list(groups_list), "hidden_dims": list(widths), "group_dim": group_dim,
              "n_samples": n_samples, "epochs": epochs, "n_heads": n_heads}
    return SweepResult("capacity", pd.DataFrame(rows), None, params, models)


def token_data(
    n_samples: int, *, n_groups: int, group_dim: int, bias_strength: float, random_state: Any = 0,
    shifted: bool = False
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`make_biased` (or :func:`make_shifted`) rows as ``(n, G + 1, group_dim + G + 1)`` tokens.

    Token ``t`` holds group ``t``'s ``group_dim`` features (the spurious
    group last) followed by a one-hot code of ``t``: the transformers have no
    positional encoding and pool by the mean, so without the code they could
    not tell which token is which group.
    """
    make = make_shifted if shifted else make_biased
    data = make(n_samples, n_groups=n_groups, group_dim=group_dim, bias_strength=bias_strength,
                random_state=random_state)
    names = list(data.groups)
    col = {f: i for i, f in enumerate(data.feature_names)}
    order = [m if isinstance(m, int) else col[m] for g in names for m in data.groups[g]]
    x = np.asarray(data.X, dtype=np.float32)[:, order].reshape(n_samples, len(names), group_dim)
    position = np.broadcast_to(np.eye(len(names), dtype=np.float32), (n_samples, len(names), len(names)))
    return np.concatenate([x, position], axis=2), np.asarray(data.y), names


def scale_sweep(
    *,
    widths: Sequence[int] = (16, 32, 64),
    depths: Sequence[int] = (1, 2, 3),
    n_groups: int = 4,
    group_dim: int = 4,
    bias_strength: float = 0.8,
    n_samples: int = 2000,
    epochs: int = 15,
    n_heads: int = 4,
    random_state: RandomState = 0,
    progress: bool = False,
    keep_models: bool = False,
) -> SweepResult:
    """Width and depth scaling of :class:`~featurelens.models.SmallTransformer`.

    Data: :func:`token_data` (``G + 1`` tokens, spurious token last, bias
    ``bias_strength``), 60/20/20 split. Per trained model and encoder layer
    ``transformer_layers.{i}``: effective rank and interference of its
    output (:func:`layer_summary`), its attention statistics on
    probabilities (:func:`~featurelens.internals.attention.attention_statistics`:
    mean entropy and sparsity over heads, head diversity on per-head
    patterns — the notebook softmaxed probabilities again and averaged heads
    first), and the norm of the test-loss gradient with respect to the
    layer's parameters (:func:`gradient_norms`, summed over its submodules).

    Returns
    -------
    SweepResult
        ``layers``: one row per ``(width, depth, layer)`` with
        ``effective_rank``, ``interference``, ``attention_entropy``,
        ``attention_sparsity``, ``head_diversity``, ``grad_norm``.
        ``table``: one row per ``(width, depth)`` with their means over layers
        and ``test_accuracy``, ``parameters``.
    """
    ws, ds = _sizes(widths, "widths"), _sizes(depths, "depths")
    n_heads = check_int(n_heads, name="n_heads", minimum=1)
    bad = [w for w in ws if w % n_heads]
    if bad:
        raise ValueError(f"widths {bad} are not divisible by n_heads={n_heads}")
    n_samples = check_int(n_samples, name="n_samples", minimum=20)
    epochs = check_int(epochs, name="epochs", minimum=1)
    rng = check_random_state(random_state)
    configs = [(w, d) for w in ws for d in ds]
    seeds = _seeds(rng, len(configs))
    layer_rows, rows, models = [], [], {}
    with progress_bar("scale sweep", len(configs), enabled=progress) as advance:
        for (w, d), seed in zip(configs, seeds, strict=True):
            x, y, _ = token_data(n_samples, n_groups=n_groups, group_dim=group_dim,
                                 bias_strength=bias_strength, random_state=seed)
            sp = train_val_test_split(x, y, random_state=seed)
            (x_tr, y_tr), (x_te, y_te) = sp.train, sp.test
            model = _fit(lambda w=w, d=d, dim=x.shape[2]: SmallTransformer(dim, hidden_dim=w, n_heads=n_heads,
                                                                           n_layers=d, dropout=0.0),
                         torch.as_tensor(x_tr), y_tr, epochs=epochs, seed=seed)
            x_te = torch.as_tensor(x_te)
            names = [f"transformer_layers.{i}" for i in range(d)]
            summ = layer_summary(model, x_te, modules=names, random_state=seed)
            att = attention_statistics(attention_weights(model, x_te)).groupby(level="module").mean()
            grads = gradient_norms(model, x_te, y_te)
            for i, name in enumerate(names):
                own = grads.loc[[n for n in grads.index if n == name or n.startswith(name + ".")], "grad_norm"]
                a = att.loc[name + ".self_attn"]
                layer_rows.append({
                    "width": w, "depth": d, "layer": i,
                    "effective_rank": float(summ.loc[name, "effective_rank"]),
                    "interference": float(summ.loc[name, "interference"]),
                    "attention_entropy": float(a["entropy"]), "attention_sparsity": float(a["sparsity"]),
                    "head_diversity": float(a["head_diversity"]),
                    "grad_norm": float(np.sqrt(np.sum(own.to_numpy() ** 2))),
                })
            mine = pd.DataFrame(layer_rows[-d:])
            rows.append({"width": w, "depth": d,
                         **mine.drop(columns=["width", "depth", "layer"]).mean().to_dict(),
                         "test_accuracy": logit_accuracy(model, x_te, y_te),
                         "parameters": sum(p.numel() for p in model.parameters())})
            if keep_models:
                models[(w, d)] = model
            advance(info=f"width={w} depth={d}")
    params = {"widths": list(ws), "depths": list(ds), "n_groups": n_groups, "group_dim": group_dim,
              "bias_strength": bias_strength, "n_samples": n_samples, "epochs": epochs, "n_heads": n_heads}
    return SweepResult("scale", pd.DataFrame(rows), pd.DataFrame(layer_rows), params, models)


def architecture_sweep(
    *,
    architectures: Sequence[str] = ("small", "parallel", "hierarchical", "gated"),
    hidden_dim: int = 32,
    n_groups: int = 4,
    group_dim: int = 4,
    bias_strength: float = 0.8,
    n_samples: int = 3000,
    epochs: int = 15,
    noise_levels: Sequence[float] = (0.1, 0.5, 1.0),
    random_state: RandomState = 0,
    progress: bool = False,
    keep_models: bool = False,
) -> SweepResult:
    """Compare the notebook's architecture variants on the same biased token data.

    Every architecture (``"small"``: :class:`~featurelens.models.SmallTransformer`
    with 2 layers; ``"parallel"``, ``"hierarchical"``, ``"gated"``: the
    variants in :mod:`featurelens.models`) is trained with the same seed on
    :func:`token_data` and evaluated on its test split and on a shifted set
    (:func:`~featurelens.datasets.make_shifted`: spurious link broken).

    Returns
    -------
    SweepResult
        ``table`` columns per architecture: ``parameters``,
        ``test_accuracy``, ``shifted_accuracy``; ``representation_rank``:
        mean effective rank over the outputs of the model's encoder layers
        (:func:`layer_summary` on ``nn.TransformerEncoderLayer`` modules);
        ``spurious_share`` and ``attribution_spread``: the share of the
        spurious group in group ablation importance (mean |Δ probability|
        when a token is set to its training mean; via
        :func:`featurelens.attribute`) and the standard deviation of the
        shares over groups (the notebook's "feature attribution variance", on
        normalised shares); ``ablation_sensitivity``: the mean over groups of
        that |Δ probability|; ``noise_sensitivity``: mean |Δ probability|
        under Gaussian noise of ``σ`` times each feature's training standard
        deviation, averaged over ``noise_levels`` (noise seeded from ``random_state``).
    """
    names = tuple(architectures) if not isinstance(architectures, str) else (architectures,)
    unknown = [a for a in names if a not in ARCHITECTURES]
    if not names or unknown:
        raise ValueError(f"architectures must be among {', '.join(map(repr, ARCHITECTURES))}; got {list(names)!r}")
    hidden_dim = check_int(hidden_dim, name="hidden_dim", minimum=4)
    if hidden_dim % 4:
        raise ValueError(f"hidden_dim must be divisible by 4 (heads), got {hidden_dim}")
    levels = [float(s) for s in noise_levels]
    if not levels or any(not math.isfinite(s) or s < 0 for s in levels):
        raise ValueError(f"noise_levels must be non-negative finite numbers, got {list(noise_levels)!r}")
    rng = check_random_state(random_state)
    seed = _seeds(rng, 1)[0]
    x, y, groups = token_data(n_samples, n_groups=n_groups, group_dim=group_dim, bias_strength=bias_strength,
                              random_state=seed)
    x_sh, y_sh, _ = token_data(n_samples // 2, n_groups=n_groups, group_dim=group_dim,
                               bias_strength=bias_strength, random_state=seed + 1, shifted=True)
    sp = train_val_test_split(x, y, random_state=seed)
    (x_tr, y_tr), (x_te, y_te) = sp.train, sp.test
    x_tr, x_te, x_sh = torch.as_tensor(x_tr), torch.as_tensor(x_te), torch.as_tensor(x_sh)
    std = x_tr.std(dim=0, keepdim=True)
    width = x.shape[2]
    flat_groups = {g: list(range(t * width, (t + 1) * width)) for t, g in enumerate(groups)}
    noise_gen = torch.Generator().manual_seed(seed)
    noise = [torch.randn(x_te.shape, generator=noise_gen) * std * s for s in levels]
    rows, models = [], {}
    with progress_bar("architecture sweep", len(names), enabled=progress) as advance:
        for arch in names:
            kwargs = {"n_layers": 2} if arch == "small" else {}
            model = _fit(lambda arch=arch, kwargs=kwargs: ARCHITECTURES[arch](width, hidden_dim=hidden_dim, n_heads=4,
                                                                          dropout=0.0, **kwargs),
                         x_tr, y_tr, epochs=epochs, seed=seed)
            enc = [n for n, m in model.named_modules() if isinstance(m, nn.TransformerEncoderLayer)]
            summ = layer_summary(model, x_te, modules=enc, random_state=seed)
            flat = nn.Sequential(nn.Unflatten(1, (len(groups), width)), model)
            expl = attribute(flat, x_te.reshape(x_te.shape[0], -1), method="ablation", groups=flat_groups,
                             baselines="mean", background=x_tr.reshape(x_tr.shape[0], -1), link="sigmoid")
            imp = expl.importance()
            share = imp / imp.abs().sum()
            prob = OutputSelector(link="sigmoid")
            p0 = evaluate(model, x_te, output=prob)
            sens = [float((evaluate(model, x_te + e, output=prob) - p0).abs().mean()) for e in noise]
            rows.append({
                "architecture": arch, "parameters": sum(p.numel() for p in model.parameters()),
                "test_accuracy": logit_accuracy(model, x_te, y_te),
                "shifted_accuracy": logit_accuracy(model, x_sh, y_sh),
                "representation_rank": float(summ["effective_rank"].mean()),
                "spurious_share": float(share[groups[-1]]), "attribution_spread": float(share.std(ddof=0)),
                "ablation_sensitivity": float(imp.mean()), "noise_sensitivity": float(np.mean(sens)),
            })
            if keep_models:
                models[arch] = model
            advance(info=arch)
    params = {"architectures": list(names), "hidden_dim": hidden_dim, "n_groups": n_groups,
              "group_dim": group_dim, "bias_strength": bias_strength, "n_samples": n_samples,
              "epochs": epochs, "noise_levels": levels}
    return SweepResult("architectures", pd.DataFrame(rows), None, params, models)
