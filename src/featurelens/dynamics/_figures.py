"""Training-dynamics figures: the training map, per-run timelines, model-selection curves.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no
graphviz); the training map's layout comes from networkx. Each ``*_figure``
function writes one PNG into ``directory`` and returns the report's
``{"file", "title", "caption", "alt"}`` dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from featurelens.dynamics._detours import occupancy
from featurelens.report._figures import COLOURS, FigureInfo, _save

#: user-scalar columns drawn by :func:`timeline_figure` by default, when present
LOSS_COLUMNS = ("train_loss", "val_loss", "eval_loss", "test_loss", "loss")
MAX_TIMELINES = 12


def state_colours(n_states: int) -> list[str]:
    """One colour per state: Okabe–Ito for up to 8 states, tab20 beyond."""
    if n_states <= len(COLOURS):
        return list(COLOURS[:n_states])
    cmap = colormaps["tab20"]
    return [cmap(k % 20) for k in range(n_states)]


def transition_counts(states: Sequence[np.ndarray], *, n_states: int) -> np.ndarray:
    """``(K, K)`` counts of observed Viterbi transitions ``s_t → s_{t+1}`` over all runs (self-loops too)."""
    counts = np.zeros((n_states, n_states), dtype=np.int64)
    for s in states:
        s = np.asarray(s, dtype=np.int64)
        if s.size > 1:
            np.add.at(counts, (s[:-1], s[1:]), 1)
    return counts


def training_map(model: Any, states: Sequence[np.ndarray]) -> Any:
    """The training map as a ``networkx.DiGraph``.

    Nodes are the states ``0..K-1`` with attributes ``n_runs`` (runs whose
    Viterbi path visits the state), ``first_visit`` (mean over those runs of
    the first-visit index divided by the run length, in [0, 1)),
    ``occupancy`` (fraction of all checkpoints) and ``self_prob``
    (``transmat[k, k]``). Edges are the transitions ``i → j`` (``i ≠ j``)
    observed at least once in a decoded path, with ``prob = transmat[i, j]``
    (the authors' "trim" mode keeps only observed pairs) and ``count`` (number
    of observed occurrences).
    """
    try:
        import networkx as nx
    except ImportError:
        raise ValueError("the training map needs networkx: pip install networkx") from None
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


def _layout(graph: Any) -> dict[int, np.ndarray]:
    """Left to right by mean first visit; states first visited at about the same time share a column."""
    import networkx as nx

    visited = [n for n in graph.nodes if graph.nodes[n]["n_runs"] > 0]
    order = sorted(visited, key=lambda n: graph.nodes[n]["first_visit"])
    layer, last = 0, None
    for n in order:
        fv = graph.nodes[n]["first_visit"]
        if last is not None and fv - last > 0.05:
            layer += 1
        graph.nodes[n]["layer"] = layer
        last = fv
    for n in graph.nodes:
        graph.nodes[n].setdefault("layer", layer + 1)
    return {n: np.asarray(p) for n, p in nx.multipartite_layout(graph, subset_key="layer").items()}


def training_map_figure(directory: Path, model: Any, states: Sequence[np.ndarray], dpi: int = 110,
                        file: str = "training_map.png") -> FigureInfo:
    """Draw :func:`training_map`: nodes by first visit, edges labelled with transition probabilities."""
    graph = training_map(model, states)
    pos = _layout(graph)
    colours = state_colours(model.n_states)
    n_layers = 1 + max(graph.nodes[n]["layer"] for n in graph.nodes)
    fig = Figure(figsize=(max(6.0, 1.9 * n_layers + 1.5), 4.8), layout="constrained")
    ax = fig.add_subplot()
    max_count = max([d["count"] for _, _, d in graph.edges(data=True)] or [1])
    for i, j, d in graph.edges(data=True):
        ax.annotate("", xy=pos[j], xytext=pos[i], zorder=1,
                    arrowprops={"arrowstyle": "-|>", "color": "0.35", "shrinkA": 19, "shrinkB": 19,
                                "lw": 0.8 + 2.5 * d["count"] / max_count, "mutation_scale": 14,
                                "connectionstyle": "arc3,rad=0.18"})
        mid = (pos[i] + pos[j]) / 2
        # matplotlib's arc3 puts the control point at mid + rad * (dy, -dx); the curve's middle is half-way there
        mid = mid + 0.09 * np.array([pos[j][1] - pos[i][1], pos[i][0] - pos[j][0]])
        ax.text(mid[0], mid[1], f"{d['prob']:.3f}\n(n={d['count']})", fontsize=7.5, ha="center",
                va="center", zorder=3, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    for n in graph.nodes:
        node = graph.nodes[n]
        alpha = 1.0 if node["n_runs"] else 0.3
        ax.scatter(*pos[n], s=1700, color=colours[n], alpha=alpha, edgecolors="0.2", zorder=2)
        ax.text(pos[n][0], pos[n][1], f"{n}\nstay {node['self_prob']:.3f}", ha="center", va="center",
                fontsize=7.5, zorder=4, fontweight="bold")
    xy = np.array(list(pos.values()))
    pad = 0.35
    ax.update_datalim([xy.min(axis=0) - pad, xy.max(axis=0) + pad])
    ax.autoscale_view()
    # arc3 bends arrows in display space: equal scales keep the labels on their arcs
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    ax.set_title(f"Training map ({model.n_states} states, {len(states)} runs)")
    _save(fig, directory / file, dpi)
    edges = sorted(graph.edges(data=True), key=lambda e: -e[2]["count"])
    top = ", ".join(f"{i}→{j} (p={d['prob']:.3f}, n={d['count']})" for i, j, d in edges[:5]) or "none"
    unvisited = [n for n in graph.nodes if graph.nodes[n]["n_runs"] == 0]
    return {
        "file": file,
        "title": "Training map",
        "caption": (
            "Latent states of the HMM (nodes, numbered from 0) placed left to right by the mean time of the "
            "first visit (fraction of the run); states first visited at about the same time share a column. "
            "An arrow i→j is drawn for every transition seen at least once in the Viterbi paths, labelled "
            "with the fitted transition probability transmat[i, j] and the number of observed occurrences n "
            "(arrow width ∝ n); 'stay' is transmat[k, k]."
            + (f" Never-visited states (faded): {unvisited}." if unvisited else "")
        ),
        "alt": f"Directed graph of {model.n_states} training states; most frequent transitions: {top}.",
    }


def timeline_figure(directory: Path, frames: Sequence[pd.DataFrame], states: Sequence[np.ndarray],
                    run_ids: Sequence[str], *, n_states: int, x: str = "step",
                    columns: Sequence[str] | None = None, max_runs: int = MAX_TIMELINES, dpi: int = 110,
                    file: str = "timelines.png") -> FigureInfo | None:
    """Per-run loss curves against ``x``, each checkpoint coloured by its Viterbi state.

    ``columns`` default to those of :data:`LOSS_COLUMNS` present in every
    frame; the first is drawn dashed, the others solid. Returns ``None``
    when there is no such column. At most ``max_runs`` runs are drawn (the
    first ones in ``run_ids`` order).
    """
    if columns is None:
        columns = [c for c in LOSS_COLUMNS if all(c in f.columns for f in frames)]
    columns = list(columns)
    if not columns:
        return None
    shown = min(len(frames), max_runs)
    ncols = min(3, shown)
    nrows = -(-shown // ncols)
    colours = state_colours(n_states)
    fig = Figure(figsize=(3.6 * ncols + 0.5, 2.5 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    styles = ["--", "-", ":", "-.", "-"]
    log_y = all((f[columns].to_numpy(dtype=np.float64) > 0).all() for f in frames[:shown])
    for r in range(nrows * ncols):
        ax = axes[r // ncols][r % ncols]
        if r >= shown:
            ax.set_axis_off()
            continue
        frame, path = frames[r], np.asarray(states[r])
        xs = frame[x].to_numpy(dtype=np.float64)
        for c, col in enumerate(columns):
            ys = frame[col].to_numpy(dtype=np.float64)
            ax.plot(xs, ys, styles[c % len(styles)], color="0.55", lw=0.9, zorder=1)
            ax.scatter(xs, ys, c=[colours[s] for s in path], s=9, zorder=2, linewidths=0)
        ax.set_title(str(run_ids[r]), fontsize=9)
        if log_y:
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks on 12 shared axes cost seconds
        ax.tick_params(labelsize=7)
        ax.set_xlabel(x, fontsize=8)
    handles = [Line2D([], [], ls="", marker="o", color=colours[k], label=f"state {k}") for k in range(n_states)]
    handles += [Line2D([], [], ls=styles[c % len(styles)], color="0.55", label=col) for c, col in enumerate(columns)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False, fontsize=8)
    _save(fig, directory / file, dpi)
    extra = f" Only the first {shown} of {len(frames)} runs are drawn." if shown < len(frames) else ""
    return {
        "file": file,
        "title": "Loss timelines coloured by latent state",
        "caption": (f"{', '.join(columns)} against {x} for each run; every logged checkpoint is a dot coloured by "
                    f"its Viterbi state, so state changes show where the training phase changes.{extra}"),
        "alt": f"{shown} small line charts of {', '.join(columns)} with dots coloured by {n_states} states.",
    }


def selection_figure(directory: Path, table: pd.DataFrame, *, recommended: int | None = None,
                     dpi: int = 110, file: str = "model_selection.png") -> FigureInfo:
    """Test log-likelihood per number of states (every restart, mean ± std, best) with AIC/BIC.

    ``table`` is :attr:`ModelSelection.table` (columns ``n_states``,
    ``restart``, ``test_loglik``, ``aic``, ``bic``, optionally ``test_aic``,
    ``test_bic``). AIC and BIC are the means over restarts, on a second y
    axis (the authors' plot); those of the held-out runs when the table has
    them (the authors' convention), else the training ones.
    """
    missing = [c for c in ("n_states", "test_loglik", "aic", "bic") if c not in table.columns]
    if missing:
        raise ValueError(f"table is missing column(s) {missing}")
    # the authors plot AIC/BIC of the held-out runs; use them when the table has them
    on_test = "test_aic" in table.columns and "test_bic" in table.columns
    aic, bic = ("test_aic", "test_bic") if on_test else ("aic", "bic")
    where = "held-out" if on_test else "training"
    g = table.groupby("n_states")
    ks = np.asarray(sorted(g.groups), dtype=np.int64)
    mean, std, best = g["test_loglik"].mean(), g["test_loglik"].std(ddof=0), g["test_loglik"].max()
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(table["n_states"], table["test_loglik"], s=10, color=COLOURS[0], alpha=0.35,
               label="test log-likelihood, each restart")
    ax.errorbar(ks, mean.loc[ks], yerr=std.loc[ks], color=COLOURS[0], capsize=3, marker="o", ms=4,
                label="test log-likelihood, mean ± std")
    if "selected" in table.columns:  # the restart kept as the model for K (highest training log-likelihood)
        chosen = table[table["selected"].astype(bool)].set_index("n_states")["test_loglik"]
        ax.plot(ks, chosen.loc[ks], color=COLOURS[0], ls="--", lw=1, label="test log-likelihood, selected restart")
    else:
        ax.plot(ks, best.loc[ks], color=COLOURS[0], ls="--", lw=1, label="test log-likelihood, best restart")
    ax.set_xlabel("number of states K")
    ax.set_ylabel("test log-likelihood (nats, held-out runs)")
    ax.set_xticks(ks)
    twin = ax.twinx()
    twin.plot(ks, g[aic].mean().loc[ks], color=COLOURS[1], marker="s", ms=4, label="AIC (mean over restarts)")
    twin.plot(ks, g[bic].mean().loc[ks], color=COLOURS[5], marker="^", ms=4, label="BIC (mean over restarts)")
    twin.set_ylabel(f"AIC / BIC on the {where} runs (lower is better)")
    if recommended is not None:
        ax.axvline(recommended, color="0.3", ls=":", lw=1)
        ax.annotate(f"recommended K={recommended}", (recommended, ax.get_ylim()[0]), xytext=(4, 6),
                    textcoords="offset points", fontsize=8)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
    ax.set_title("Model selection")
    _save(fig, directory / file, dpi)
    return {
        "file": file,
        "title": "Model selection",
        "caption": ("Log-likelihood of the held-out runs for each number of states K: every restart (dots), "
                    "mean ± std over restarts and the selected restart (dashed; the one kept as the model for K, "
                    "or the best test score if the table does not say); AIC and BIC (means over restarts, "
                    f"computed on the {where} runs) on the right axis."
                    + (f" The dotted line marks the recommended K={recommended}." if recommended else "")),
        "alt": f"Model-selection curves for K = {ks.min()}..{ks.max()}.",
    }
