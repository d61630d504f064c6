"""The training map: observed Viterbi transitions and the state graph they form.

Computation only; the figure is :class:`featurelens.report.TrainingMapDisplay`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np

from featurelens.dynamics._detours import occupancy


def transition_counts(states: Sequence[np.ndarray], *, n_states: int) -> np.ndarray:
    """``(K, K)`` counts of observed Viterbi transitions ``s_t → s_{t+1}`` over all runs (self-loops too)."""
    counts = np.zeros((n_states, n_states), dtype=np.int64)
    for s in states:
        s = np.asarray(s, dtype=np.int64)
        if s.size > 1:
            np.add.at(counts, (s[:-1], s[1:]), 1)
    return counts


def training_map(model: Any, states: Sequence[np.ndarray]) -> nx.DiGraph:
    """Return the training map as a ``networkx.DiGraph``.

    Nodes are the states ``0..K-1`` with attributes ``n_runs`` (runs whose
    Viterbi path visits the state), ``first_visit`` (mean over those runs of
    the first-visit index divided by the run length, in [0, 1)),
    ``occupancy`` (fraction of all checkpoints) and ``self_prob``
    (``transmat[k, k]``). Edges are the transitions ``i → j`` (``i ≠ j``)
    observed at least once in a decoded path, with ``prob = transmat[i, j]``
    (the authors' "trim" mode keeps only observed pairs) and ``count`` (number
    of observed occurrences).
    """
    k = model.n_states
    counts = transition_counts(states, n_states=k)
    occ = occupancy(list(states), n_states=k)
    graph = nx.DiGraph()
    total = occ.sum()
    for s in range(k):
        firsts = [np.flatnonzero(p == s)[0] / len(p) for p in states if (p == s).any()]
        graph.add_node(s, n_runs=len(firsts), first_visit=float(np.mean(firsts)) if firsts else float("nan"),
                       occupancy=float(occ[:, s].sum() / total), self_prob=float(model.transmat[s, s]))
    for i in range(k):
        for j in range(k):
            if i != j and counts[i, j] > 0:
                graph.add_edge(i, j, prob=float(model.transmat[i, j]), count=int(counts[i, j]))
    return graph
