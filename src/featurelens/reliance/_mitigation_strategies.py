"""The mitigation strategies: each trains (or refits) a new model from a copy of the original.

Every strategy is a function ``strategy(ctx, **options) -> (model, history)``
over a :class:`Context` holding a fresh copy of the model and the checked data.
Definitions, with the papers they follow:

* ``adversarial`` — PGD adversarial training whose attack may only move the
  suspect group (Madry et al. 2018, restricted by a feature mask).
* ``randomize`` — counterfactual augmentation: in every mini-batch the suspect
  group of a share ``p`` of the rows is swapped with that of other rows of the
  batch, so it carries no information about the label.
* ``group_dropout`` — the suspect group of a share ``p`` of the rows is
  replaced by its training mean.
* ``group_dro`` — online group DRO (Sagawa et al. 2020): group weights
  ``q_g ∝ q_g exp(η L_g)`` after every batch, objective ``Σ_g q_g L_g``.
* ``reweight`` — group-balanced importance weighting (the "RWG" baseline of
  Idrissi et al. 2022): each row is weighted ``1 / (G · n_g / n)`` so every
  environment carries the same total weight.
* ``jtt`` — Just Train Twice (Liu et al. 2021): training rows misclassified
  by an identification model are up-weighted by ``upweight``; the
  identification model is the original one, or (``identification_epochs=T``,
  the paper's first stage) a fresh copy trained by ERM for ``T`` epochs.
* ``dfr`` — deep feature reweighting (Kirichenko et al. 2023): the last
  linear layer is refitted by ℓ1 logistic regression on group-balanced
  subsets of held-out data, averaged over subsets.
* ``orthogonal`` — the orthogonality penalty of :func:`featurelens.models.train`.
* ``pcgrad`` — gradient surgery between environment losses (Yu et al. 2020):
  each environment's gradient is projected off the others' when they conflict.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from featurelens._validation import check_float, check_int
from featurelens.models import preserve_model, row_losses, train
from featurelens.models.adversarial import adversarial_train
from featurelens.reliance._robustness import predict


@dataclass
class Context:
    """What every strategy needs: a fresh copy of the model and checked data."""

    model: nn.Module  # the copy to train (re-initialised or not, as asked)
    original: nn.Module  # the user's model; read only (JTT's error set, DFR's start)
    X: torch.Tensor
    y: np.ndarray
    suspect_cols: list[int]
    environments: np.ndarray | None  # int codes per training row
    X_val: torch.Tensor | None
    y_val: np.ndarray | None
    env_val: np.ndarray | None
    loss: str
    train_options: dict[str, Any]
    rng: np.random.Generator


def _seed(ctx: Context) -> int:
    return int(ctx.rng.integers(0, 2**63 - 1))


def _validation(ctx: Context) -> dict[str, Any]:
    if ctx.X_val is not None:
        return {"validation_data": (ctx.X_val, ctx.y_val)}
    return {}


def _fit(ctx: Context, **kw: Any) -> tuple[nn.Module, pd.DataFrame]:
    res = train(ctx.model, ctx.X, ctx.y, loss=ctx.loss, random_state=_seed(ctx), **_validation(ctx),
                **ctx.train_options, **kw)
    return ctx.model, res.history


def _suspect_index(ctx: Context) -> torch.Tensor:
    return torch.as_tensor(ctx.suspect_cols, device=ctx.X.device)


def _targets(ctx: Context, yb: torch.Tensor) -> torch.Tensor:
    return yb.long() if ctx.loss == "ce" else yb


def adversarial(
    ctx: Context, *, epsilon: float = 1.0, mix: float = 1.0, n_steps: int = 5
) -> tuple[nn.Module, pd.DataFrame]:
    mask = torch.zeros(ctx.X.shape[-1], dtype=torch.bool)
    mask[ctx.suspect_cols] = True
    new, res = adversarial_train(
        ctx.model, ctx.X, ctx.y, attack="pgd", epsilon=epsilon, mix=mix, n_steps=n_steps, mask=mask, loss=ctx.loss,
        random_state=_seed(ctx), **_validation(ctx), **ctx.train_options,
    )
    return new, res.history


def _swap_objective(ctx: Context, p: float, mode: str):
    cols = _suspect_index(ctx)
    mean = ctx.X.reshape(-1, ctx.X.shape[-1]).mean(dim=0)[cols]

    def objective(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        xb = xb.clone()
        hit = torch.rand(xb.shape[0], device=xb.device) < p  # forked, seeded torch RNG inside train()
        if bool(hit.any()):
            if mode == "randomize":
                donor = xb[torch.randperm(xb.shape[0], device=xb.device)][..., cols]
            else:
                donor = mean.expand_as(xb[..., cols])
            part = xb[..., cols]
            sel = hit.reshape((-1,) + (1,) * (xb.dim() - 1))
            xb[..., cols] = torch.where(sel, donor, part)
        return row_losses(ctx.loss, net(xb), _targets(ctx, yb)).mean()

    return objective


def randomize(ctx: Context, *, p: float = 1.0) -> tuple[nn.Module, pd.DataFrame]:
    p = check_float(p, name="p", low=0.0, high=1.0)
    return _fit(ctx, batch_objective=_swap_objective(ctx, p, "randomize"))


def group_dropout(ctx: Context, *, p: float = 0.5) -> tuple[nn.Module, pd.DataFrame]:
    p = check_float(p, name="p", low=0.0, high=1.0)
    return _fit(ctx, batch_objective=_swap_objective(ctx, p, "dropout"))


def _need_env(ctx: Context, strategy: str) -> tuple[torch.Tensor, int]:
    if ctx.environments is None:
        raise ValueError(f"strategy {strategy!r} needs environments (given or inferred)")
    env = torch.as_tensor(ctx.environments, device=ctx.X.device)
    return env, int(ctx.environments.max()) + 1


def group_dro(ctx: Context, *, eta: float = 0.01) -> tuple[nn.Module, pd.DataFrame]:
    eta = check_float(eta, name="eta", low=0.0)
    env, k = _need_env(ctx, "group_dro")
    q = torch.full((k,), 1.0 / k, dtype=torch.float64)

    def objective(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        nonlocal q
        losses = row_losses(ctx.loss, net(xb), _targets(ctx, yb))
        e = env[rows]
        counts = torch.bincount(e, minlength=k).to(losses.dtype)
        sums = torch.zeros(k, dtype=losses.dtype, device=losses.device).index_add(0, e, losses)
        group_loss = sums / counts.clamp(min=1)
        present = (counts > 0).cpu()
        with torch.no_grad():
            upd = q * torch.exp(eta * group_loss.detach().double().cpu())
            q = torch.where(present, upd, q)
            q = q / q.sum()
        return (q.to(losses.dtype).to(losses.device) * group_loss).sum()

    return _fit(ctx, batch_objective=objective)


def reweight(ctx: Context) -> tuple[nn.Module, pd.DataFrame]:
    env, k = _need_env(ctx, "reweight")
    codes = env.cpu().numpy()
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    present = counts > 0
    weights = len(codes) / (present.sum() * counts[codes])
    return _fit(ctx, sample_weight=weights)


def jtt(
    ctx: Context, *, upweight: float = 5.0, identification_epochs: int | None = None
) -> tuple[nn.Module, pd.DataFrame]:
    upweight = check_float(upweight, name="upweight", low=1.0)
    if identification_epochs is None:  # the given (fully trained) model identifies the errors
        identifier = ctx.original
    else:  # JTT's first stage: a copy of the fresh model trained by ERM for T epochs only
        t = check_int(identification_epochs, name="identification_epochs", minimum=1)
        identifier = copy.deepcopy(ctx.model)
        opts = {k: v for k, v in ctx.train_options.items() if k not in ("epochs", "patience")}
        train(identifier, ctx.X, ctx.y, loss=ctx.loss, random_state=_seed(ctx), epochs=t, patience=None,
              validation_fraction=0.0, **{k: v for k, v in opts.items() if k != "validation_fraction"})
    pred = _predict_labels(identifier, ctx.X, ctx.loss)
    errors = pred != ctx.y.astype(pred.dtype)
    return _fit(ctx, sample_weight=np.where(errors, upweight, 1.0))


def orthogonal(ctx: Context, *, penalty: float = 0.1) -> tuple[nn.Module, pd.DataFrame]:
    penalty = check_float(penalty, name="penalty", low=0.0, inclusive=(False, True))
    return _fit(ctx, orthogonal_penalty=penalty)


def pcgrad(ctx: Context) -> tuple[nn.Module, pd.DataFrame]:
    env, _ = _need_env(ctx, "pcgrad")
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(_seed(ctx))

    def objective(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        losses = row_losses(ctx.loss, net(xb), _targets(ctx, yb))
        e = env[rows]
        grads, env_losses = [], []
        for g in torch.unique(e).tolist():
            lg = losses[e == g].mean()
            env_losses.append(lg)
            parts = torch.autograd.grad(lg, params, retain_graph=True, allow_unused=True)
            grads.append(torch.cat([(torch.zeros_like(p) if d is None else d).reshape(-1)
                                    for p, d in zip(params, parts, strict=True)]))
        projected = []
        for i, gi in enumerate(grads):
            gi = gi.clone()
            for j in torch.randperm(len(grads), generator=gen).tolist():
                if j == i:
                    continue
                dot = gi @ grads[j]
                if dot < 0:
                    gi = gi - dot / (grads[j] @ grads[j]).clamp(min=1e-30) * grads[j]
            projected.append(gi)
        total = torch.stack(projected).sum(dim=0)
        surrogate = torch.zeros((), dtype=losses.dtype, device=losses.device)
        offset = 0
        for p in params:
            surrogate = surrogate + (p * total[offset : offset + p.numel()].reshape(p.shape)).sum()
            offset += p.numel()
        value = torch.stack(env_losses).sum().detach()
        return surrogate - surrogate.detach() + value  # gradient: the PCGrad direction; value: Σ_e L_e

    return _fit(ctx, batch_objective=objective)


def _predict_labels(model: nn.Module, X: torch.Tensor, loss: str) -> np.ndarray:
    out = predict(model, X, "identity")
    if loss == "ce":
        return out.argmax(dim=1).numpy()
    if loss == "bce":
        return (out.reshape(-1) > 0).numpy().astype(np.float64)
    raise ValueError("strategy 'jtt' needs a classification loss ('bce' or 'ce'): it up-weights misclassified rows")


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("strategy 'dfr' needs a model whose last layer is an nn.Linear")
    return linears[-1]


def dfr(ctx: Context, *, C: float = 1.0, n_subsets: int = 10) -> tuple[nn.Module, pd.DataFrame]:
    C = check_float(C, name="C", low=0.0, inclusive=(False, True))
    n_subsets = check_int(n_subsets, name="n_subsets", minimum=1)
    if ctx.loss == "mse":
        raise ValueError("strategy 'dfr' refits a classifier head; it needs loss='bce' or 'ce'")
    if ctx.X_val is None or ctx.env_val is None:
        raise ValueError("strategy 'dfr' needs held-out data (X_val, y_val) with environments to balance")
    new = copy.deepcopy(ctx.original)
    name, head = _last_linear(new)
    feats: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda m, i, o: feats.append(i[0].detach().clone()))  # a copy, not a view
    try:
        with preserve_model(new, eval_mode=True), torch.no_grad():
            out = new(ctx.X_val)
    finally:
        handle.remove()
    z = feats[0]
    expected = head(z).detach()
    if expected.numel() != out.numel() or not torch.allclose(expected.reshape(out.shape), out.detach(), atol=1e-5):
        raise ValueError(f"strategy 'dfr': the model output is not the output of its last nn.Linear {name!r}")
    if z.dim() != 2:
        raise ValueError(f"strategy 'dfr': the last layer {name!r} must see (n, features) inputs, got {tuple(z.shape)}")
    z_np = z.double().cpu().numpy()
    mu, sd = z_np.mean(axis=0), z_np.std(axis=0) + 1e-12
    zs = (z_np - mu) / sd
    env = ctx.env_val
    groups = np.unique(env)
    size = min(int((env == g).sum()) for g in groups)
    coefs, intercepts = [], []
    for _ in range(n_subsets):
        idx = np.concatenate([ctx.rng.choice(np.flatnonzero(env == g), size=size, replace=False) for g in groups])
        lr = LogisticRegression(l1_ratio=1.0, C=C, solver="saga" if ctx.loss == "ce" else "liblinear",
                                max_iter=2000, random_state=int(ctx.rng.integers(0, 2**31 - 1)))
        lr.fit(zs[idx], ctx.y_val[idx].astype(int))
        coefs.append(lr.coef_)
        intercepts.append(lr.intercept_)
    coef, intercept = np.mean(coefs, axis=0), np.mean(intercepts, axis=0)
    w = coef / sd[None, :]  # undo the standardisation: logit = coef · (z − mu)/sd + b
    b = intercept - w @ mu
    if ctx.loss == "bce" and head.out_features != 1:
        raise ValueError("strategy 'dfr' with loss='bce' needs a last layer with one output")
    if ctx.loss == "ce" and w.shape[0] == 1:  # sklearn's binary case: logit of class 1 vs 0
        w, b = np.vstack([-w / 2, w / 2]), np.array([-b[0] / 2, b[0] / 2])
    if w.shape[0] != head.out_features:
        raise ValueError(f"strategy 'dfr': the last layer has {head.out_features} outputs but the labels have "
                         f"{w.shape[0]} classes")
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w, dtype=head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(torch.as_tensor(b, dtype=head.bias.dtype))
        else:
            raise ValueError(f"strategy 'dfr': the last layer {name!r} has no bias")
    history = pd.DataFrame({"subset": range(n_subsets), "group_size": size})
    return new, history


#: name -> (function, option defaults); mitigation strategies reject unknown options
STRATEGIES = {
    "adversarial": adversarial,
    "dfr": dfr,
    "group_dro": group_dro,
    "group_dropout": group_dropout,
    "jtt": jtt,
    "orthogonal": orthogonal,
    "pcgrad": pcgrad,
    "randomize": randomize,
    "reweight": reweight,
}
#: strategies that need environments (group labels) on the training rows / the held-out rows
NEEDS_ENV = ("group_dro", "pcgrad", "reweight")
NEEDS_VAL_ENV = ("dfr",)
