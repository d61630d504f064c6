"""Read activations with context-scoped forward hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from featurelens._validation import check_int
from featurelens.internals._modules import ModuleSpec, as_input_tensor, resolve_modules
from featurelens.models._state import preserve_model

TUPLE_SUFFIX = ".tuple"


def _cat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0:
            return torch.stack(parts)
        return torch.cat(parts, dim=0)
    return first if all(p is None for p in parts) else parts


class Activations(Mapping[str, Any]):
    """Read-only mapping ``module name -> activation`` filled by :func:`capture`.

    * ``acts[name]``: the module's output; a tuple output (e.g.
      ``nn.MultiheadAttention`` returns ``(out, weights)``) stores element 0.
    * ``acts[name + ".tuple"]``: for tuple outputs only, the full tuple, each
      tensor element concatenated over calls like the main entry.
    * Several forward calls inside one ``capture`` block are concatenated
      along dim 0 (the batch axis), in call order; ``acts.calls[name]`` is
      the number of calls seen. A module that never ran is absent.
    """

    def __init__(self) -> None:
        self._parts: dict[str, list[Any]] = {}
        self._cache: dict[str, Any] = {}
        self.calls: dict[str, int] = {}

    def _add(self, name: str, value: Any) -> None:
        self._parts.setdefault(name, []).append(value)
        self._cache.pop(name, None)

    def __getitem__(self, name: str) -> Any:
        if name not in self._parts:
            raise KeyError(f"no activation captured for {name!r}; captured: {', '.join(self._parts) or 'none'}")
        if name not in self._cache:
            parts = self._parts[name]
            if isinstance(parts[0], tuple):
                self._cache[name] = tuple(_cat([p[i] for p in parts]) for i in range(len(parts[0])))
            else:
                self._cache[name] = _cat(parts)
        return self._cache[name]

    def calls_of(self, name: str) -> list[Any]:
        """The stored output of each call of ``name``, in call order (not concatenated)."""
        if name not in self._parts:
            raise KeyError(f"no activation captured for {name!r}; captured: {', '.join(self._parts) or 'none'}")
        return list(self._parts[name])

    def unit_rows(self, name: str) -> torch.Tensor:
        """All calls of ``name`` as one ``(rows, units)`` matrix: each call's output
        ``(b, ..., units)`` reshaped to ``(b * ..., units)``, concatenated in call order.

        Works when calls differ in their middle axes (e.g. a layer applied to
        windows of different lengths), where ``acts[name]`` cannot concatenate.
        """
        if name not in self._parts:
            raise KeyError(f"no activation captured for {name!r}; captured: {', '.join(self._parts) or 'none'}")
        parts = [p for p in self._parts[name] if isinstance(p, torch.Tensor)]
        if not parts or parts[0].dim() < 2 or len({p.shape[-1] for p in parts}) != 1:
            raise ValueError(f"the outputs of {name!r} are not (batch, ..., units) tensors with one unit count")
        return torch.cat([p.reshape(-1, p.shape[-1]) for p in parts], dim=0)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape) for k, v in self.items() if isinstance(v, torch.Tensor)}
        return f"Activations({shapes})"


def _store(value: Any, *, detach: bool, to_cpu: bool) -> Any:
    if isinstance(value, torch.Tensor):
        if detach:
            value = value.detach()
        return value.cpu() if to_cpu else value
    if isinstance(value, (tuple, list)):
        return tuple(_store(v, detach=detach, to_cpu=to_cpu) for v in value)
    return value


@contextlib.contextmanager
def capture(
    model: nn.Module, modules: ModuleSpec, *, detach: bool = True, to_cpu: bool = False
) -> Iterator[Activations]:
    """Record the outputs of ``modules`` during the forward passes run in the block.

    Parameters
    ----------
    model : nn.Module
    modules : ModuleSpec
        Anything :func:`resolve_modules` accepts.
    detach : bool
        Store ``tensor.detach()`` (default). With ``False`` the stored tensors
        stay in the autograd graph.
    to_cpu : bool
        Move stored tensors to the CPU.

    Yields
    ------
    Activations
        ``name -> tensor`` of shape ``(sum of batch sizes, *unit_shape)``:
        calls are concatenated along dim 0; tuple outputs store element 0 and
        the full tuple under ``name + ".tuple"``.

    Notes
    -----
    The model's mode is not changed. Hooks are removed on exit, also when
    the block raises.
    """
    named = resolve_modules(model, modules)
    acts = Activations()
    handles = []
    try:
        for name, module in named.items():

            def hook(_m: nn.Module, _inp: Any, out: Any, name: str = name) -> None:
                acts.calls[name] = acts.calls.get(name, 0) + 1
                if isinstance(out, (tuple, list)):
                    full = _store(out, detach=detach, to_cpu=to_cpu)
                    acts._add(name, full[0])
                    acts._add(name + TUPLE_SUFFIX, full)
                else:
                    acts._add(name, _store(out, detach=detach, to_cpu=to_cpu))

            handles.append(module.register_forward_hook(hook))
        yield acts
    finally:
        for h in handles:
            h.remove()


def iter_batches(x: torch.Tensor, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Slices of ``x`` along dim 0 of at most ``batch_size`` rows (all rows if ``None``)."""
    n = x.shape[0]
    size = n if batch_size is None else check_int(batch_size, name="batch_size", minimum=1)
    for start in range(0, n, size):
        yield x[start : start + size]


def collect(
    model: nn.Module, modules: ModuleSpec, inputs: Any, *, batch_size: int | None = None
) -> Activations:
    """Stream ``inputs`` through ``model`` and return the captured activations on the CPU.

    Runs under ``torch.no_grad()`` with every submodule in eval mode (via
    :func:`~featurelens.models.preserve_model`, which restores the mode
    afterwards) in batches of ``batch_size`` rows (all at once if ``None``).

    Returns
    -------
    Activations
        ``name -> tensor`` of shape ``(N, *unit_shape)``, rows in input order.
    """
    resolve_modules(model, modules)
    if batch_size is not None:
        check_int(batch_size, name="batch_size", minimum=1)
    x = as_input_tensor(model, inputs)
    with preserve_model(model), torch.no_grad(), capture(model, modules, to_cpu=True) as acts:
        for batch in iter_batches(x, batch_size):
            model(batch)
    return acts
