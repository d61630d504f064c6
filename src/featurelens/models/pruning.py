"""Magnitude pruning with ``torch.nn.utils.prune`` masks, lottery tickets with rewinding.

Masks are the standard ``torch.nn.utils.prune`` reparametrisation: a pruned
parameter ``weight`` becomes the parameter ``weight_orig`` and the buffer
``weight_mask``, and a forward-pre-hook computes ``weight = weight_orig * weight_mask``.
Every function here addresses layers by their exact module path and parameters
by their exact dotted name (``"layer1.weight"``), never by substring (the deep-hedging lottery-ticket notebook
matched masks with ``name in key``, so ``layer1`` also matched ``layer10``).
Checkpoints written by :func:`save_checkpoint` reload through
:func:`featurelens.models.load_model` (``weights_only=True``) with bit-identical
predictions.

Functions that prune or train return a NEW model (a deep copy); the model passed
in is never modified. The read-only functions (:func:`pruning_masks`,
:func:`sparsity`, :func:`unpruned_weights`, :func:`effective_weight`) also read
TorchScript modules traced or scripted from a pruned model.
"""

from featurelens.models._lottery import LotteryTicket, iterative_magnitude_pruning, save_checkpoint
from featurelens.models._pruning_masks import (
    copy_model,
    effective_weight,
    magnitude_prune,
    make_permanent,
    pruning_masks,
)
from featurelens.models._sparsity import sparsity, unpruned_weights

__all__ = [
    "LotteryTicket",
    "copy_model",
    "effective_weight",
    "iterative_magnitude_pruning",
    "magnitude_prune",
    "make_permanent",
    "pruning_masks",
    "save_checkpoint",
    "sparsity",
    "unpruned_weights",
]
