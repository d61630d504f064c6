"""Displays of reliance results: detection, robustness curves, interactions, mitigation, subgroups, windows.

scikit-learn's Display convention (see :class:`Display`); the reliance report
draws its figures through these classes, so a notebook figure equals the report's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from featurelens.reliance import (
    MitigationTable,
    RobustnessCurve,
    SpuriousReport,
    WindowImportance,
    verdict_of,
)
from featurelens.report._figures import COLOURS, HIGHLIGHT, LINESTYLES, MARKERS, Display, wrap

VERDICT_COLOURS = {"spurious": HIGHLIGHT, "relied upon": COLOURS[0], "unstable": COLOURS[1], "neither": "0.6"}
STRENGTH_LABEL = "perturbation strength (ε in units of each feature's standard deviation; dropout: probability)"


def _table(obj: Any, kind: type, name: str) -> pd.DataFrame:
    """``obj``'s table: a result of type ``kind`` (its ``to_frame()``) or a DataFrame."""
    if isinstance(obj, kind):
        return obj.to_frame()
    if isinstance(obj, pd.DataFrame):
        return obj
    raise TypeError(f"{name} must be a {kind.__name__} or a pandas DataFrame, got {type(obj).__name__}")


def _require(table: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(map(repr, missing))}; it has "
                         f"{', '.join(map(repr, map(str, table.columns)))}")


class DetectionDisplay(Display):
    """Permutation reliance (± 2 SE) per group coloured by verdict, next to the group–label relation's spread.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`SpuriousReport.table`: columns ``group``, ``reliance_permutation``,
        ``relation_spread``, optionally ``reliance_permutation_se`` and the
        flags ``relied_upon``, ``unstable``, ``spurious``.
    """

    def __init__(self, table: pd.DataFrame):
        _require(table, ("group", "reliance_permutation", "relation_spread"), "detection")
        self.table = table

    @classmethod
    def from_report(cls, report: SpuriousReport, *, ax: Any = None) -> DetectionDisplay:
        """Plot :func:`featurelens.reliance.detect_spurious`'s result (or its table)."""
        return cls(_table(report, SpuriousReport, "report")).plot(ax=ax)

    @property
    def verdicts(self) -> list[str]:
        """Per group: ``"spurious"``, ``"relied upon"``, ``"unstable"`` or ``"neither"``."""
        return [verdict_of(r) for _, r in self.table.iterrows()]

    def _n_panels(self) -> int:
        return 2

    def _size(self) -> tuple[float, float]:
        return 9.0, 1.6 + 0.35 * len(self.table)

    def plot(self, ax: Any = None) -> DetectionDisplay:
        """Draw into ``ax`` (two Axes, or ``None`` for a new figure); returns ``self``."""
        ax1, ax2 = self._axes(ax, sharey=True)
        t = self.table
        names, verdicts = t["group"].astype(str).tolist(), self.verdicts
        colours = [VERDICT_COLOURS[v] for v in verdicts]
        y = np.arange(len(names))
        se = t["reliance_permutation_se"] if "reliance_permutation_se" in t.columns else pd.Series(np.zeros(len(t)))
        ax1.barh(y, t["reliance_permutation"].to_numpy(np.float64), xerr=2 * se.to_numpy(np.float64),
                 color=colours, error_kw={"ecolor": "0.2", "capsize": 2})
        ax1.axvline(0, color="0.3", lw=0.8)
        ax1.set_yticks(y, names)
        ax1.set_ylim(len(names) - 0.5, -0.5)
        ax1.set_xlabel(wrap("reliance: permutation importance (metric drop)", 48))
        ax2.barh(y, np.nan_to_num(t["relation_spread"].to_numpy(np.float64)), color=colours)
        ax2.set_xlabel(wrap("spread of the group–label relation across environments", 48))
        for a in (ax1, ax2):
            a.grid(axis="x", alpha=0.3)
        handles = [Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items() if v in verdicts]
        self._legend(handles, [h.get_label() for h in handles], ncols=4, title="verdict")
        return self._done()


class RobustnessDisplay(Display):
    """One curve per perturbation: the metric against strength, ± one standard deviation band.

    Each perturbation has its own colour, line style and marker, so curves
    that coincide (e.g. FGSM and PGD at small ε) stay visible.

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy table with columns ``perturbation``, ``strength``, ``metric``
        and optionally ``std``.
    robustness_metric : str
        The metric's name (the y-axis label).
    """

    def __init__(self, table: pd.DataFrame, *, robustness_metric: str = "metric"):
        _require(table, ("perturbation", "strength", "metric"), "robustness")
        self.table, self.robustness_metric = table, str(robustness_metric)

    @classmethod
    def from_curves(cls, curves: Mapping[str, RobustnessCurve] | pd.DataFrame, *, robustness_metric: str | None = None,
                    ax: Any = None) -> RobustnessDisplay:
        """Plot one :class:`RobustnessCurve` per perturbation name, or the tidy table of :func:`robustness`."""
        table = tidy_robustness(curves)
        if robustness_metric is None and isinstance(curves, Mapping):
            robustness_metric = next(iter(curves.values())).metric
        return cls(table, robustness_metric=robustness_metric or "metric").plot(ax=ax)

    @property
    def kinds(self) -> list[str]:
        """The perturbations, in drawing order."""
        return list(dict.fromkeys(self.table["perturbation"].astype(str)))

    def _size(self) -> tuple[float, float]:
        return 7.0, 4.4

    def plot(self, ax: Any = None) -> RobustnessDisplay:
        """Draw the curves into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        kinds = self.kinds
        for j, kind in enumerate(kinds):
            part = self.table[self.table["perturbation"].astype(str) == kind].sort_values("strength")
            xs, ys = part["strength"].to_numpy(np.float64), part["metric"].to_numpy(np.float64)
            colour = COLOURS[j % len(COLOURS)]
            ax.plot(xs, ys, color=colour, ls=LINESTYLES[j % len(LINESTYLES)], marker=MARKERS[j % len(MARKERS)],
                    ms=6 - 1.2 * (j % 3), lw=1.8, mfc="none" if j % 2 else colour, label=kind, zorder=3 + j)
            if "std" in part.columns:
                e = np.nan_to_num(part["std"].to_numpy(np.float64))
                ax.fill_between(xs, ys - e, ys + e, color=colour, alpha=0.15, lw=0)
        ax.set_xlabel(wrap(STRENGTH_LABEL, 70))
        ax.set_ylabel(self.robustness_metric)
        ax.grid(alpha=0.3)
        ax.legend(title="perturbation", frameon=False)
        return self._done()


def tidy_robustness(curves: Any) -> pd.DataFrame:
    """Return a tidy ``perturbation, strength, metric, std...`` table from curves by name or a tidy table."""
    if isinstance(curves, pd.DataFrame):
        return curves
    if not isinstance(curves, Mapping):
        raise TypeError(f"robustness must be a mapping of name to RobustnessCurve or a DataFrame, "
                        f"got {type(curves).__name__}")
    if not curves:
        raise ValueError("robustness is an empty mapping")
    parts = []
    for key, curve in curves.items():
        part = _table(curve, RobustnessCurve, f"robustness[{key!r}]").copy()
        part.insert(0, "perturbation", str(key))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


class InteractionDisplay(Display):
    """Heatmap of a symmetric player x player interaction matrix, diverging colours centred at 0.

    Parameters
    ----------
    matrix : pandas.DataFrame
        Square, same labels on rows and columns (groups or features).
    label : str
        What the rows and columns are: ``"group"`` or ``"feature"``.
    title : str, optional
    """

    def __init__(self, matrix: pd.DataFrame, *, label: str = "group", title: str | None = None):
        if matrix.shape[0] != matrix.shape[1] or [str(c) for c in matrix.columns] != [str(i) for i in matrix.index]:
            raise ValueError(f"an interaction matrix must be square with the same row and column labels, "
                             f"got shape {matrix.shape}")
        self.matrix, self.label = matrix, label
        self.title = title or f"Pairwise interactions between {label}s"

    @classmethod
    def from_matrix(cls, matrix: pd.DataFrame, *, label: str = "group", title: str | None = None,
                    ax: Any = None) -> InteractionDisplay:
        """Plot :func:`featurelens.reliance.interaction_matrix`'s result."""
        if not isinstance(matrix, pd.DataFrame):
            raise TypeError(f"matrix must be a pandas DataFrame, got {type(matrix).__name__}")
        return cls(matrix, label=label, title=title).plot(ax=ax)

    def _size(self) -> tuple[float, float]:
        k = len(self.matrix)
        return 2.2 + 0.7 * k, 1.8 + 0.6 * k

    def plot(self, ax: Any = None) -> InteractionDisplay:
        """Draw the heatmap into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        values = self.matrix.to_numpy(np.float64)
        labels = [str(c) for c in self.matrix.columns]
        k = len(labels)
        bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
        bound = bound if bound > 0 else 1.0
        image = ax.imshow(values, cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_xticks(np.arange(k), labels, rotation=45, ha="right")
        ax.set_yticks(np.arange(k), [str(i) for i in self.matrix.index])
        ax.set_xlabel(self.label)
        ax.set_ylabel(self.label)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if np.isfinite(values[i, j]):
                        ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=8,
                                color="white" if abs(values[i, j]) > 0.6 * bound else "black")
        self.figure_.colorbar(image, ax=ax, shrink=0.8, label="interaction (output units)")
        ax.set_title(self.title)
        return self._done()


class MitigationDisplay(Display):
    """Bars per strategy: in-distribution metric, each shifted metric and the reliance on the mitigated group.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns as in :class:`MitigationTable` (``strategy``, ``in_distribution``,
        ``shifted`` or ``shifted_<name>``, ``reliance``); another schema draws
        its first three numeric columns.
    group : str, optional
        The group the strategies acted on (in the reliance panel's label).
    """

    def __init__(self, table: pd.DataFrame, *, group: str | None = None):
        _require(table, ("strategy",), "mitigation")
        self.table, self.group = table, group
        shifted = [c for c in table.columns if str(c).startswith("shifted") and not str(c).endswith("_change")]
        panels = [("in_distribution", "in-distribution metric")] if "in_distribution" in table.columns else []
        panels += [(c, f"{str(c).replace('_', ' ')} metric") for c in shifted]
        if "reliance" in table.columns:
            panels.append(("reliance", f"reliance on {group!r}" if group else "reliance on the suspect group"))
        if not panels:
            numeric = [c for c in table.columns if c != "strategy" and pd.api.types.is_numeric_dtype(table[c])
                       and not pd.api.types.is_bool_dtype(table[c])]
            if not numeric:
                raise ValueError("mitigation table has no numeric column to draw")
            panels = [(c, str(c)) for c in numeric[:3]]
        self.panels = panels

    @classmethod
    def from_table(cls, table: MitigationTable | pd.DataFrame, *, group: str | None = None,
                   ax: Any = None) -> MitigationDisplay:
        """Plot :func:`featurelens.reliance.evaluate_mitigations`'s result (group: its ``suspect``)."""
        if isinstance(table, MitigationTable) and group is None:
            group = table.suspect
        return cls(_table(table, MitigationTable, "table"), group=group).plot(ax=ax)

    def _n_panels(self) -> int:
        return len(self.panels)

    def _size(self) -> tuple[float, float]:
        return 3.4 * len(self.panels), 1.8 + 0.35 * len(self.table)

    def plot(self, ax: Any = None) -> MitigationDisplay:
        """Draw one panel per column into ``ax`` (that many Axes, or ``None``); returns ``self``."""
        axes = self._axes(ax, sharey=True)
        names = self.table["strategy"].astype(str).tolist()
        y = np.arange(len(names))
        colours = [COLOURS[0] if i == 0 else COLOURS[2] for i in range(len(names))]
        for panel, (col, label) in zip(axes, self.panels, strict=True):
            panel.barh(y, self.table[col].to_numpy(np.float64), color=colours)
            panel.set_xlabel(wrap(label, 34))
            panel.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(y, names)
        axes[0].set_ylim(len(names) - 0.5, -0.5)
        return self._done()


class SubgroupDisplay(Display):
    """Bars of a metric per subgroup (e.g. AUC by insurance type) with the row counts.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per subgroup; column ``by`` names it, ``value`` is drawn, ``n`` (optional) is printed.
    by, value : str
    """

    def __init__(self, table: pd.DataFrame, *, by: str, value: str):
        _require(table, (by, value), "subgroups")
        self.table, self.by, self.value = table, by, value

    @classmethod
    def from_frame(cls, table: pd.DataFrame, *, by: str | None = None, value: str | None = None,
                   ax: Any = None) -> SubgroupDisplay:
        """Plot :func:`featurelens.reliance.metrics_by_subgroup`'s table.

        Default ``by``: the first column; default ``value``: ``auc`` or the last numeric column.
        """
        if not isinstance(table, pd.DataFrame) or table.empty:
            raise ValueError("subgroups must be a non-empty pandas DataFrame")
        by = str(table.columns[0]) if by is None else by
        return cls(table, by=by, value=value or subgroup_value(table)).plot(ax=ax)

    def _size(self) -> tuple[float, float]:
        return 6.0, 1.6 + 0.4 * len(self.table)

    def plot(self, ax: Any = None) -> SubgroupDisplay:
        """Draw the bars into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        names = self.table[self.by].astype(str).tolist()
        vals = self.table[self.value].to_numpy(np.float64)
        y = np.arange(len(names))
        ax.barh(y, vals, color=COLOURS[0])
        ax.set_yticks(y, names)
        ax.set_ylim(len(names) - 0.5, -0.5)
        if "n" in self.table.columns:
            for i, n in enumerate(self.table["n"]):
                ax.text(vals[i], i, f"  n = {int(n)}", va="center", fontsize=8)
        ax.set_xlabel(self.value)
        ax.set_ylabel(self.by)
        ax.grid(axis="x", alpha=0.3)
        return self._done()


def subgroup_value(table: pd.DataFrame) -> str:
    """Return the subgroup table's drawn column: ``auc`` if present, else the last numeric column after the first."""
    numeric = [c for c in table.columns[1:] if pd.api.types.is_numeric_dtype(table[c]) and c != "n"]
    if not numeric:
        raise ValueError("subgroups needs a numeric metric column after the subgroup column")
    return "auc" if "auc" in table.columns else str(numeric[-1])


class WindowsDisplay(Display):
    """Importance of each group per time window, one line per group (± standard error where given).

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``window``, ``group``, ``importance`` and optionally ``std_error``.
    """

    def __init__(self, table: pd.DataFrame):
        _require(table, ("window", "group", "importance"), "windows")
        self.table = table

    @classmethod
    def from_importance(cls, importance: WindowImportance | pd.DataFrame, *, ax: Any = None) -> WindowsDisplay:
        """Plot :func:`featurelens.reliance.importance_over_windows`'s result (or its table)."""
        return cls(_table(importance, WindowImportance, "importance")).plot(ax=ax)

    def _size(self) -> tuple[float, float]:
        return 7.0, 4.0

    def plot(self, ax: Any = None) -> WindowsDisplay:
        """Draw the lines into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        groups = list(dict.fromkeys(self.table["group"].astype(str)))
        for j, g in enumerate(groups):
            part = self.table[self.table["group"].astype(str) == g]
            err = part["std_error"].to_numpy(np.float64) if "std_error" in part.columns else None
            ax.errorbar(part["window"].astype(str), part["importance"].to_numpy(np.float64), yerr=err,
                        marker=MARKERS[j % len(MARKERS)], ls=LINESTYLES[j % len(LINESTYLES)], capsize=2,
                        color=COLOURS[j % len(COLOURS)], label=g)
        ax.set_xlabel("window")
        ax.set_ylabel("importance")
        ax.grid(alpha=0.3)
        ax.legend(title="group", frameon=False)
        for tick in ax.get_xticklabels():
            tick.set_rotation(45)
        return self._done()
