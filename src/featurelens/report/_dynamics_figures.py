"""Training-dynamics figures as sklearn-style displays (matplotlib object API, no pyplot, no graphviz).

:class:`TrainingMapDisplay` (the state graph, laid out by networkx),
:class:`StateTimelineDisplay` (per-run loss curves coloured by state) and
:class:`ModelSelectionDisplay` (held-out log-likelihood and AIC/BIC per K). Each
``__init__`` stores computed data, ``from_*`` computes it and plots, ``plot``
draws and returns the display with ``figure_`` and ``ax_`` (or ``axes_``) set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from featurelens.dynamics import DynamicsAnalysis, GaussianHMM, ModelSelection, training_map
from featurelens.report._figures import COLOURS

#: user-scalar columns drawn by :class:`StateTimelineDisplay` by default, when present
LOSS_COLUMNS = ("train_loss", "val_loss", "eval_loss", "test_loss", "loss")
MAX_TIMELINES = 12
#: positions along an arrow tried for its label, the middle first
_LABEL_AT = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78)


def state_colours(n_states: int) -> list[Any]:
    """One colour per state: Okabe–Ito for up to 8 states, tab20 beyond."""
    if n_states <= len(COLOURS):
        return list(COLOURS[:n_states])
    cmap = colormaps["tab20"]
    return [cmap(k % 20) for k in range(n_states)]


def text_colour(fill: Any) -> str:
    """``"white"`` or ``"black"``, whichever contrasts more with ``fill`` (WCAG relative luminance)."""
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(fill)]
    lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "white" if 1.05 / (lum + 0.05) > (lum + 0.05) / 0.05 else "black"


def _bezier(p0: np.ndarray, p2: np.ndarray, rad: float, t: float) -> np.ndarray:
    """Point ``t`` of matplotlib's ``arc3`` curve from ``p0`` to ``p2`` (control point ``mid + rad·(dy, −dx)``)."""
    d = p2 - p0
    c = (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


def _bend(pos: dict[int, np.ndarray], i: int, j: int, clearance: float) -> float:
    """Return the gentlest ``arc3`` bend, to either side, whose curve stays ``clearance`` away from the other nodes.

    Tried in the order 0.18, −0.18, 0.3, −0.3, ... 0.6, −0.6; the least-crossing one when none is clear.
    """
    others = [p for n, p in pos.items() if n not in (i, j)]
    best = (np.inf, 0.18)
    for rad in (0.18, -0.18, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6):
        curve = np.array([_bezier(pos[i], pos[j], rad, t) for t in np.linspace(0.1, 0.9, 17)])
        gaps = [float(np.min(np.linalg.norm(curve - p, axis=1))) for p in others]
        crossed = sum(g <= clearance for g in gaps)
        if not crossed:
            return rad
        best = min(best, (crossed, rad), key=lambda b: b[0])
    return best[1]


def _layout(graph: nx.DiGraph) -> dict[int, np.ndarray]:
    """Left to right by mean first visit; states first visited at about the same time share a column."""
    order = sorted((n for n in graph.nodes if graph.nodes[n]["n_runs"] > 0),
                   key=lambda n: graph.nodes[n]["first_visit"])
    layers, layer, last = {}, 0, None
    for n in order:
        fv = graph.nodes[n]["first_visit"]
        if last is not None and fv - last > 0.05:
            layer += 1
        layers[n], last = layer, fv
    g = nx.DiGraph()
    g.add_nodes_from((n, {"layer": layers.get(n, layer + 1)}) for n in graph.nodes)
    return {n: np.asarray(p, dtype=np.float64) for n, p in nx.multipartite_layout(g, subset_key="layer").items()}


class TrainingMapDisplay:
    """The training map: HMM states placed left to right by first visit, observed transitions as arrows.

    Parameters
    ----------
    graph : networkx.DiGraph
        :func:`featurelens.dynamics.training_map` (node attributes ``n_runs``,
        ``first_visit``, ``self_prob``; edge attributes ``prob``, ``count``).
    n_runs : int
        Runs the paths came from (for the title).

    Attributes
    ----------
    positions_ : dict of int to ndarray
        Node centres in data coordinates (set by :meth:`plot`).
    figure_, ax_ : matplotlib Figure and Axes
    """

    def __init__(self, graph: nx.DiGraph, *, n_runs: int) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(f"graph must be a networkx.DiGraph from training_map, got {type(graph).__name__}")
        self.graph, self.n_runs = graph, int(n_runs)

    @classmethod
    def from_model(cls, model: GaussianHMM, states: Sequence[np.ndarray], *, ax: Axes | None = None
                   ) -> TrainingMapDisplay:
        """Return the map of ``model`` over the decoded ``states`` (one path per run), plotted on ``ax``."""
        return cls(training_map(model, states), n_runs=len(states)).plot(ax=ax)

    @classmethod
    def from_analysis(cls, analysis: DynamicsAnalysis, *, ax: Axes | None = None) -> TrainingMapDisplay:
        """Return the map of an :func:`~featurelens.dynamics.analyse_runs` result, plotted on ``ax``."""
        return cls.from_model(analysis.model, analysis.paths, ax=ax)

    def plot(self, ax: Axes | None = None) -> TrainingMapDisplay:
        """Draw nodes (state, stay probability; faded when never visited) and labelled arrows; return ``self``.

        Arrow width grows with the observed count; an arrow bends further when
        its straight path would cross another node, and its label slides along
        it until it covers no node and no other label.
        """
        graph, pos = self.graph, _layout(self.graph)
        k = graph.number_of_nodes()
        dist = [np.linalg.norm(pos[a] - pos[b]) for a in pos for b in pos if a < b]
        radius = min(0.15, 0.4 * min(dist)) if dist else 0.15
        edges = sorted(graph.edges(data=True), key=lambda e: -e[2]["count"])
        bends = {(i, j): _bend(pos, i, j, clearance=1.6 * radius) for i, j, _ in edges}
        # what must fit: the nodes and the middle of every arc, with room for a label
        xy = np.array([*pos.values(), *(_bezier(pos[i], pos[j], r, 0.5) for (i, j), r in bends.items())])
        pad = radius + 0.25
        lo, hi = xy.min(axis=0) - pad, xy.max(axis=0) + pad
        if ax is None:
            width = max(6.0, 1.9 * len({round(float(p[0]), 6) for p in pos.values()}) + 1.5)
            height = float(np.clip(width * (hi[1] - lo[1]) / (hi[0] - lo[0]) + 0.6, 3.0, 6.0))
            ax = Figure(figsize=(width, height), layout="constrained").add_subplot()
        fig = ax.figure
        colours = state_colours(k)
        circles = {}
        for n in graph.nodes:
            visited = graph.nodes[n]["n_runs"] > 0
            circles[n] = ax.add_patch(Circle(pos[n], radius, fc=colours[n], ec="0.2", alpha=1.0 if visited else 0.3,
                                             zorder=2))
            ink = text_colour(colours[n]) if visited else "black"
            ax.text(*pos[n], f"{n}\nstay {graph.nodes[n]['self_prob']:.3f}", ha="center", va="center",
                    fontsize=7.5, fontweight="bold", color=ink, zorder=4).set_in_layout(False)
        max_count = max([d["count"] for _, _, d in graph.edges(data=True)] or [1])
        labels = []
        for i, j, d in edges:
            rad = bends[i, j]
            ax.annotate("", xy=pos[j], xytext=pos[i], zorder=1,
                        arrowprops={"arrowstyle": "-|>", "color": "0.35", "patchA": circles[i], "patchB": circles[j],
                                    "shrinkA": 2, "shrinkB": 2, "lw": 0.8 + 2.5 * d["count"] / max_count,
                                    "mutation_scale": 14, "connectionstyle": f"arc3,rad={rad}"})
            text = ax.text(*_bezier(pos[i], pos[j], rad, 0.5), f"{d['prob']:.3f}\n(n={d['count']})", fontsize=7.5,
                           ha="center", va="center", zorder=3,
                           bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
            text.set_in_layout(False)
            labels.append((text, pos[i], pos[j], rad))
        ax.update_datalim([lo, hi])
        ax.autoscale_view()
        # arc3 bends arrows in display space: equal scales keep the labels on their arcs
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_axis_off()
        ax.set_title(f"Training map ({k} states, {self.n_runs} runs)")
        _place_labels(fig, ax, labels, [pos[n] for n in graph.nodes], radius)
        self.positions_, self.ax_, self.figure_ = pos, ax, fig
        return self


def _place_labels(fig: Figure, ax: Axes, labels: list[tuple[Any, np.ndarray, np.ndarray, float]],
                  centres: list[np.ndarray], radius: float) -> None:
    """Slide each edge label along its arc to the first point where it overlaps no node and no earlier label."""
    if not labels:
        return
    fig.draw_without_rendering()  # solves the layout and the equal aspect, so display sizes are final
    to_px = ax.transData.transform
    scale = abs(to_px((1.0, 0.0))[0] - to_px((0.0, 0.0))[0])
    nodes = [(to_px(c), radius * scale + 2.0) for c in centres]
    placed: list[Any] = []

    def overlaps(box: Any) -> int:
        hits = sum(np.hypot(np.clip(c[0], box.x0, box.x1) - c[0], np.clip(c[1], box.y0, box.y1) - c[1]) < r
                   for c, r in nodes)
        return hits + sum(box.overlaps(other) for other in placed)

    for text, p0, p2, rad in labels:
        best = None
        for t in _LABEL_AT:
            text.set_position(_bezier(p0, p2, rad, t))
            box = text.get_window_extent().expanded(1.05, 1.1)
            hits = overlaps(box)
            if best is None or hits < best[0]:
                best = (hits, t, box)
            if hits == 0:
                break
        text.set_position(_bezier(p0, p2, rad, best[1]))
        placed.append(best[2])


def default_columns(frames: Sequence[pd.DataFrame]) -> list[str]:
    """Return the :data:`LOSS_COLUMNS` present in every frame, in that order."""
    return [c for c in LOSS_COLUMNS if all(c in f.columns for f in frames)]


class StateTimelineDisplay:
    """Per-run curves of a few logged columns against a step column, each checkpoint coloured by its state.

    Parameters
    ----------
    frames : list of DataFrame
        One per run, with the ``sort_by`` column and every column of ``columns``.
    states : list of ndarray
        The Viterbi state of every row of each frame.
    run_ids : list of str
    n_states : int
    sort_by : str
        The column the runs are sorted by, drawn on the x axis (e.g. ``"step"``).
    columns : list of str
        The columns drawn; the first dashed, the others solid.

    Attributes
    ----------
    log_y_ : bool
        Whether the y axis is logarithmic (every drawn value positive).
    figure_, axes_ : Figure and ndarray of Axes (one per run), ``ax_`` the first
    """

    def __init__(self, frames: Sequence[pd.DataFrame], states: Sequence[np.ndarray], run_ids: Sequence[str], *,
                 n_states: int, sort_by: str, columns: Sequence[str]) -> None:
        if not columns:
            raise ValueError("columns is empty; name at least one logged column to draw")
        if not len(frames) == len(states) == len(run_ids):
            raise ValueError(f"frames, states and run_ids must have one entry per run, got {len(frames)}, "
                             f"{len(states)} and {len(run_ids)}")
        missing = sorted({c for f in frames for c in (sort_by, *columns) if c not in f.columns})
        if missing:
            raise ValueError(f"columns {missing} are missing in some runs")
        self.frames, self.states, self.run_ids = list(frames), [np.asarray(s) for s in states], list(run_ids)
        self.n_states, self.sort_by, self.columns = int(n_states), sort_by, list(columns)

    @classmethod
    def from_analysis(cls, analysis: DynamicsAnalysis, *, columns: Sequence[str] | None = None,
                      max_timelines: int = MAX_TIMELINES, ax: Any = None) -> StateTimelineDisplay:
        """Return the first ``max_timelines`` runs of ``analysis``.

        ``columns`` defaults to :func:`default_columns`.
        """
        runs = analysis.runs
        columns = default_columns(runs.frames) if columns is None else list(columns)
        if not columns:
            raise ValueError(f"columns: the runs have none of {', '.join(LOSS_COLUMNS)}; pass columns=[...]")
        n = min(len(runs), max_timelines)
        return cls(runs.frames[:n], analysis.paths[:n], runs.run_ids[:n], n_states=analysis.n_states,
                   sort_by=runs.sort_by, columns=columns).plot(ax=ax)

    def plot(self, ax: Any = None) -> StateTimelineDisplay:
        """One panel per run (a new grid of 3 columns when ``ax`` is ``None``, else one Axes per run); return ``self``.

        The y axis is shared and logarithmic when every value is positive,
        with ticks at 1, 2 and 5 times the powers of ten it spans (up to three
        decades; the powers of ten beyond) and plain-number labels.
        """
        n = len(self.frames)
        if ax is None:
            ncols = min(3, n)
            nrows = -(-n // ncols)
            fig = Figure(figsize=(3.6 * ncols + 0.7, 2.5 * nrows + 0.9), layout="constrained")
            grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
            for extra in grid.flat[n:]:
                extra.set_axis_off()
            axes = grid.flat[:n]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) < n:
                raise ValueError(f"ax must hold one Axes per run ({n}), got {len(axes)}")
            fig = axes[0].figure
        colours = state_colours(self.n_states)
        styles = ["--", "-", ":", "-.", "-"]
        values = np.concatenate([f[self.columns].to_numpy(dtype=np.float64).ravel() for f in self.frames])
        self.log_y_ = bool((values > 0).all())
        for a, frame, path, rid in zip(axes, self.frames, self.states, self.run_ids, strict=False):
            xs = frame[self.sort_by].to_numpy(dtype=np.float64)
            for c, col in enumerate(self.columns):
                ys = frame[col].to_numpy(dtype=np.float64)
                a.plot(xs, ys, styles[c % len(styles)], color="0.55", lw=0.9, zorder=1)
                a.scatter(xs, ys, c=[colours[s] for s in path], s=9, zorder=2, linewidths=0)
            a.set_title(str(rid), fontsize=9)
            a.tick_params(labelsize=7)
            a.set_xlabel(self.sort_by, fontsize=8)
        self._y_axis(axes, values)
        handles = [Line2D([], [], ls="", marker="o", color=colours[k], label=f"state {k}")
                   for k in range(self.n_states)]
        handles += [Line2D([], [], ls=styles[c % len(styles)], color="0.55", label=col)
                    for c, col in enumerate(self.columns)]
        if ax is None:
            fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False,
                       fontsize=8)
        else:
            axes[0].legend(handles=handles, fontsize=7)
        self.axes_, self.ax_, self.figure_ = np.asarray(axes), axes[0], fig
        return self

    def _y_axis(self, axes: Any, values: np.ndarray) -> None:
        name = "loss" if all(c in LOSS_COLUMNS for c in self.columns) else ", ".join(self.columns)
        for a in axes:
            if self.log_y_:
                a.set_yscale("log")
                decades = np.log10(values.max()) - np.log10(values.min())
                subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
                a.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
                a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                a.yaxis.set_minor_locator(NullLocator())  # minor log ticks on 12 shared axes cost seconds
            if a.get_subplotspec() is None or a.get_subplotspec().is_first_col():
                a.set_ylabel(name + (" (log scale)" if self.log_y_ else ""), fontsize=8)


class ModelSelectionDisplay:
    """Held-out log-likelihood per number of states (every restart, mean ± std, selected) with AIC/BIC.

    Parameters
    ----------
    table : DataFrame
        :attr:`ModelSelection.table` (columns ``n_states``, ``test_loglik``,
        ``aic``, ``bic``; optionally ``restart``, ``test_aic``, ``test_bic``,
        ``selected``). AIC and BIC are the means over restarts, on a second y
        axis (the authors' plot): those of the held-out runs when the table
        has them (the authors' convention), else the training ones.
    recommended : int, optional
        The K marked by a dotted line.

    Attributes
    ----------
    on_test_ : bool
        AIC/BIC are the held-out ones.
    figure_, ax_, twin_ax_ : Figure, the log-likelihood Axes and the AIC/BIC Axes
    """

    def __init__(self, table: pd.DataFrame, *, recommended: int | None = None) -> None:
        missing = [c for c in ("n_states", "test_loglik", "aic", "bic") if c not in table.columns]
        if missing:
            raise ValueError(f"table is missing column(s) {missing}")
        self.table, self.recommended = table, recommended
        self.on_test_ = "test_aic" in table.columns and "test_bic" in table.columns

    @classmethod
    def from_selection(cls, selection: ModelSelection, *, ax: Axes | None = None) -> ModelSelectionDisplay:
        """Return the curves of a :func:`~featurelens.dynamics.select_model` result, its recommended K marked."""
        return cls(selection.table, recommended=selection.recommended).plot(ax=ax)

    def plot(self, ax: Axes | None = None) -> ModelSelectionDisplay:
        """Draw on ``ax`` (a new figure when ``None``) and a twin axis for AIC/BIC; return ``self``."""
        table = self.table
        aic, bic = ("test_aic", "test_bic") if self.on_test_ else ("aic", "bic")
        where = "held-out" if self.on_test_ else "training"
        g = table.groupby("n_states")
        ks = np.asarray(sorted(g.groups), dtype=np.int64)
        mean, std, best = g["test_loglik"].mean(), g["test_loglik"].std(ddof=0), g["test_loglik"].max()
        own = ax is None
        if own:
            ax = Figure(figsize=(7.0, 4.2), layout="constrained").add_subplot()
        fig = ax.figure
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
        if self.recommended is not None:
            ax.axvline(self.recommended, color="0.3", ls=":", lw=1)
            ax.annotate(f"recommended K={self.recommended}", (self.recommended, ax.get_ylim()[0]), xytext=(4, 6),
                        textcoords="offset points", fontsize=8)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        if own:
            fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
        else:
            ax.legend(handles=handles, fontsize=7)
        ax.set_title("Model selection")
        self.ks_, self.ax_, self.twin_ax_, self.figure_ = ks, ax, twin, fig
        return self
