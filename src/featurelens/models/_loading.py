"""Safe model loading: TorchScript, torch.export, state dicts and pruned checkpoints.

The deep-hedging lottery-ticket notebook opened checkpoints with ``torch.load`` with weights-only loading switched off,
which runs arbitrary code stored in the file, and re-attached pruning masks
by substring match (``layer1`` matched ``layer10``). Here files are opened
with ``weights_only=True`` unless the caller explicitly trusts them, and
masks are attached to the module at their exact dotted path.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from featurelens.models._exported import module_from_program
from featurelens.models._pruning_masks import _refresh_pruned
from featurelens.models._state import set_eval

Factory = Callable[[], nn.Module]
# Pickled magic number that starts every legacy (non-zip) ``torch.save`` file.
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_TRUST_HINT = "trust=True (CLI: --trust-checkpoint)"
_MAX_LISTED = 10


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def resolve_factory(spec: Factory | str) -> Factory:
    """Return a zero-argument callable that builds the model for a state dict.

    ``spec`` is a callable returning an ``nn.Module`` or an importable
    ``"module:function"`` string (the attribute may be dotted,
    ``"pkg.models:Net.create"``). The returned callable checks that the
    result is an ``nn.Module`` (``TypeError`` naming the factory otherwise).
    A malformed string, a module that cannot be imported or a missing
    attribute raise ``ValueError``; a non-callable raises ``TypeError``.
    """
    if isinstance(spec, str):
        mod_name, sep, attr = spec.partition(":")
        if not sep or not mod_name or not attr or ":" in attr:
            raise ValueError(f"factory must have the form 'module:function', got {spec!r}")
        try:
            obj: Any = importlib.import_module(mod_name)
        except Exception as exc:
            raise ValueError(
                f"factory {spec!r}: cannot import module {mod_name!r} ({type(exc).__name__}: {exc})"
            ) from exc
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"factory {spec!r}: {mod_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        name = spec
    else:
        obj, name = spec, getattr(spec, "__qualname__", repr(spec))
    if not callable(obj):
        raise TypeError(f"factory {name!r} is not callable (got {type(obj).__name__})")

    def build() -> nn.Module:
        try:
            model = obj()
        except Exception as exc:
            raise ValueError(f"factory {name!r} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"factory {name!r} must return a torch.nn.Module, got {type(model).__name__}"
            )
        return model

    return build


def _sniff(path: Path) -> str:
    """Classify a file by content: 'torchscript', 'export', 'torch' or 'unknown'."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        names |= {n.split("/", 1)[1] for n in names if "/" in n}  # drop the archive's root folder
        if "constants.pkl" in names and any(n.startswith("code/") for n in names):
            return "torchscript"
        if "archive_format" in names:
            return "export"
        return "torch" if "data.pkl" in names else "unknown"
    with open(path, "rb") as fh:
        head = fh.read(64)
    return "torch" if head[:1] == b"\x80" and _LEGACY_MAGIC in head else "unknown"


def _export_pickles_unsafe(path: Path) -> bool:
    """Tell whether an export archive holds pickles that ``weights_only=True`` refuses.

    ``torch.export.load`` unpickles tensor subclasses, constants and sample
    inputs with full (unsafe) unpickling where a weights-only load fails; check them
    first so an untrusted archive cannot run code.
    """
    with zipfile.ZipFile(path) as zf:
        members = zf.namelist()
        pickled = [n for n in members if "/data/" in f"/{n}" and n.endswith(".pt")]
        for cfg in (n for n in members if n.endswith("_config.json") and "/data/" in f"/{n}"):
            entries = json.loads(zf.read(cfg)).get("config", {}).values()
            folder = cfg.rsplit("/", 1)[0]
            pickled += [f"{folder}/{e['path_name']}" for e in entries if e.get("use_pickle")]
        for name in pickled:
            try:
                torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
            except Exception:  # torch would retry with full unpickling
                return True
    return False


def _load_export(path: Path, trust: bool) -> nn.Module:
    if not trust and _export_pickles_unsafe(path):
        raise ValueError(
            f"the exported program {str(path)!r} contains pickled objects that can run code when "
            f"loaded; it can only be opened with {_TRUST_HINT}, and only for files you trust"
        )
    try:
        program = torch.export.load(path)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given by torch"
        raise ValueError(
            f"{str(path)!r} could not be loaded as an exported program: {type(exc).__name__}: {reason}"
        ) from exc
    return module_from_program(program, source=f"the exported program {str(path)!r}")


def _as_state_dict(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        for key in ("model_state_dict", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                return dict(obj[key])
        if obj and all(
            isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))
            for k, v in obj.items()
        ):
            return dict(obj)
        keys = _listing([repr(k) for k in list(obj)])
        raise ValueError(
            f"{str(path)!r} holds a dict that is neither a state dict (str → tensor) nor a "
            f"checkpoint with 'model_state_dict' or 'state_dict'; its keys are {keys}"
        )
    raise ValueError(
        f"{str(path)!r} holds a {type(obj).__name__}, not a model, state dict or checkpoint dict"
    )


def _apply_pruning(
    model: nn.Module, state: Mapping[str, Any]
) -> tuple[set[str], set[str], list[str]]:
    """Re-create ``torch.nn.utils.prune`` reparametrisations named in ``state``.

    For every ``<path>.<param>_orig`` / ``<path>.<param>_mask`` pair, the
    module at exactly ``<path>`` gets ``prune.custom_from_mask``. Returns the
    pruned parameter names, those skipped for a shape mismatch, and the
    mismatch descriptions.
    """
    pruned: set[str] = set()
    skipped: set[str] = set()
    mismatches: list[str] = []
    for key in state:
        if not key.endswith("_orig") or key[: -len("_orig")] + "_mask" not in state:
            continue
        base = key[: -len("_orig")]
        mod_path, _, pname = base.rpartition(".")
        try:
            module = model.get_submodule(mod_path)
        except AttributeError:
            continue  # reported as unexpected keys
        param = module._parameters.get(pname)
        if param is None:  # already pruned by the factory, or reported as unexpected keys
            if hasattr(module, pname + "_orig") and hasattr(module, pname + "_mask"):
                pruned.add(base)
            continue
        mask = state[base + "_mask"]
        if tuple(mask.shape) != tuple(param.shape) or tuple(state[key].shape) != tuple(param.shape):
            mismatches.append(
                f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(param.shape)}"
            )
            skipped.add(base)
            continue
        prune.custom_from_mask(module, pname, mask.to(param.device))
        pruned.add(base)
    return pruned, skipped, mismatches


def load_state(model: nn.Module, state: dict[str, Any], *, path: str | Path, factory_name: str) -> None:
    """Load a state dict into ``model``, re-creating the pruning masks it names.

    Every ``<param>_orig`` / ``<param>_mask`` pair of ``state`` becomes a
    ``torch.nn.utils.prune`` reparametrisation of ``model`` (``<param> =
    <param>_orig * <param>_mask``), then ``state`` is loaded strictly.

    Parameters
    ----------
    model : nn.Module
        The freshly built model; changed in place.
    state : dict of str to Tensor
        The state dict (as ``model.state_dict()`` of the saved model).
    path : str or Path
        The file ``state`` came from, named in error messages.
    factory_name : str
        The factory that built ``model``, named in error messages.

    Raises
    ------
    ValueError
        If keys are missing or unexpected or shapes differ; the message lists
        them (at most ten of each kind) and names ``path`` and ``factory_name``.
    """
    pruned, skipped, mismatches = _apply_pruning(model, state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in skipped]
    unexpected = [
        k
        for k in state
        if k not in expected and k.removesuffix("_orig").removesuffix("_mask") not in skipped
    ]
    for k, v in state.items():
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape:
            mismatches.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}")
    if missing or unexpected or mismatches:
        parts = [
            f"{len(items)} {label}: {_listing(items)}"
            for label, items in (
                ("missing key(s)", missing),
                ("unexpected key(s)", unexpected),
                ("shape mismatch(es)", mismatches),
            )
            if items
        ]
        raise ValueError(
            f"the state dict in {str(path)!r} does not fit the model built by factory "
            f"{factory_name!r}: " + "; ".join(parts)
        )
    model.load_state_dict(state)
    _refresh_pruned(model, pruned)  # ``<param> = <param>_orig * <param>_mask`` before any forward


def load_model(
    path: str | Path,
    *,
    factory: Factory | str | None = None,
    trust: bool = False,
    map_location: str | torch.device | None = "cpu",
) -> nn.Module:
    """Load a model from a file, safely by default, and return it in eval mode.

    The format is detected from the file's content, not its suffix:

    - TorchScript archives (``torch.jit.save``) are opened with
      ``torch.jit.load`` (TorchScript code runs in the TorchScript
      interpreter, not through Python's pickle).
    - ``torch.export`` programs (``torch.export.save``, usually ``.pt2``)
      give ``torch.export.unflatten(torch.export.load(path))``: the original
      module hierarchy, so layer names and forward hooks work as on the
      eager model, and inputs are checked against the program's input spec
      (``ValueError`` naming expected and received shapes). Export in eval
      mode and with a dynamic batch dimension; archives holding pickled
      objects need ``trust=True``.
    - Anything else is read with ``torch.load(weights_only=True)``. A state
      dict (str → tensor), or a checkpoint dict holding ``model_state_dict``
      or ``state_dict``, is loaded into ``factory()``. Pruning
      reparametrisations (``<module>.<param>_orig`` / ``_mask``) are re-created
      on the module at exactly that path, so the loaded model computes what
      the pruned model computed, bit for bit.

    Parameters
    ----------
    path : str or Path
        The model file.
    factory : callable or str, optional
        Builds the architecture for a state dict: a callable returning an
        ``nn.Module`` or ``"module:function"`` (see :func:`resolve_factory`).
    trust : bool
        Allow full unpickling (``torch.load`` without weights-only mode, the trust path), which can execute arbitrary
        code stored in the file. Only for files you trust. A whole pickled
        ``nn.Module`` is then returned as is.
    map_location : str or torch.device, optional
        Device to load the tensors to and to move the model to.

    Returns
    -------
    nn.Module
        The model in eval mode.

    Raises
    ------
    ValueError
        Missing path, directory, not a torch file, needs ``trust=True``, state
        dict without ``factory``, or a state dict that does not fit the model
        (missing and unexpected keys and shape mismatches listed together).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"model path {str(path)!r} is not a file")
    kind = _sniff(path)
    if kind == "unknown":
        raise ValueError(
            f"{str(path)!r} is not a torch model file (expected torch.save, torch.jit.save or "
            "torch.export.save output)"
        )
    if kind == "torchscript":
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated; loading it is still fine
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                model: nn.Module = torch.jit.load(str(path), map_location=map_location)
        except Exception as exc:
            raise ValueError(f"{str(path)!r} could not be loaded as TorchScript: {exc}") from exc
    elif kind == "export":
        model = _load_export(path, trust)
        if map_location is not None:
            model.to(map_location)
    else:
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            if not trust:
                raise ValueError(
                    f"{str(path)!r} contains pickled Python objects (e.g. a whole nn.Module), "
                    f"which can run arbitrary code when unpickled; it can only be opened with "
                    f"{_TRUST_HINT}, and only for files you trust"
                ) from exc
            obj = torch.load(path, map_location=map_location, weights_only=False)  # only with trust=True
        except Exception as exc:
            raise ValueError(f"{str(path)!r} could not be read as a torch file: {exc}") from exc
        if isinstance(obj, nn.Module):
            model = obj
        else:
            state = _as_state_dict(obj, path)
            if factory is None:
                raise ValueError(
                    f"{str(path)!r} holds a state dict, which has no architecture; pass "
                    "factory= (CLI: --factory module:function) to build the model"
                )
            name = factory if isinstance(factory, str) else getattr(factory, "__qualname__", "factory")
            model = resolve_factory(factory)()
            load_state(model, state, path=path, factory_name=name)
            if map_location is not None:
                model.to(map_location)
    return set_eval(model)
