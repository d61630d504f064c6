"""Displays of attributions: importance bars, per-sample distributions, permutation repeats, training, rank plot.

Each display follows scikit-learn's convention (see :class:`Display`): the
attribution report draws its figures through these classes, so
``ImportanceDisplay.from_explanation(e).plot(ax=ax)`` in a notebook gives the
report's figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from featurelens._protocol import format_number
from featurelens.attribution import AttributionReport, Explanation, score_vector
from featurelens.report._figures import COLOURS, HIGHLIGHT, Display, wrap
from featurelens.report._results import importance_label, unit_of

MAX_PLAYERS = 40  # players drawn per figure (the most important ones, in report order)
MAX_POINTS = 2000  # strip-plot points per player and method
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss")
JITTER_SEED = 0  # the strip plots' jitter and subsample are drawn from this generator seed
_BOX_KW = {"orientation": "horizontal"} if matplotlib.__version_info__ >= (3, 10) else {"vert": False}


def _height(n_players: int, per_player: float = 0.3) -> float:
    return 1.8 + n_players * per_player


def _player_axis(ax: Any, names: list[str], planted: str | None, level: str) -> None:
    """Players on the y axis, most important at the top, the planted one highlighted."""
    ax.set_ylim(len(names) - 0.5, -0.5)
    labels = [f"{n} (planted)" if n == planted else n for n in names]
    ticks = ax.set_yticks(np.arange(len(names)), labels)
    for tick, name in zip(ticks, names, strict=True):
        if name == planted:
            tick.label1.set_color(HIGHLIGHT)
            tick.label1.set_fontweight("bold")
    ax.set_ylabel(level)
    ax.grid(axis="x", alpha=0.3)


def _as_report(explanation: Explanation, planted: str | None) -> AttributionReport:
    if not isinstance(explanation, Explanation):
        raise TypeError(f"explanation must be an Explanation, got {type(explanation).__name__}")
    truth = None if planted is None else {f"spurious_{explanation.level}": planted}
    return AttributionReport({explanation.method: explanation}, ground_truth=truth)


def _check_report(report: Any) -> AttributionReport:
    if not isinstance(report, AttributionReport):
        raise TypeError(f"report must be an AttributionReport, got {type(report).__name__}")
    return report


class ImportanceDisplay(Display):
    """Grouped horizontal bars of normalised importance per player and method, ± scaled standard error.

    Parameters
    ----------
    normalized : pandas.DataFrame
        Rows: the players drawn (top first); columns: methods; values:
        importance / sum of |importance| of the method (over all players).
    errors : pandas.DataFrame
        Standard error of the importance, divided by the same sum.
    level : str
        ``"feature"`` or ``"group"``.
    planted : str, optional
        A player to highlight (the planted one).
    n_players : int, optional
        Number of players explained (more than drawn when the list was cut).
    """

    def __init__(self, normalized: pd.DataFrame, errors: pd.DataFrame, *, level: str = "feature",
                 planted: str | None = None, n_players: int | None = None):
        self.normalized, self.errors = normalized, errors
        self.level, self.planted = level, planted
        self.n_players = len(normalized) if n_players is None else n_players

    @classmethod
    def from_explanation(cls, explanation: Explanation, *, planted: str | None = None,
                         max_players: int = MAX_PLAYERS, ax: Any = None) -> ImportanceDisplay:
        """Compute from one explanation (``planted``: a name to highlight) and plot."""
        return cls.from_report(_as_report(explanation, planted), max_players=max_players, ax=ax)

    @classmethod
    def from_report(cls, report: AttributionReport, *, max_players: int = MAX_PLAYERS,
                    ax: Any = None) -> ImportanceDisplay:
        """Compute from every explanation of an :class:`AttributionReport` and plot."""
        report = _check_report(report)
        return cls._from_results(report.to_dict(), report.planted, max_players).plot(ax=ax)

    @classmethod
    def _from_results(cls, results: Mapping[str, Any], planted: str | None,
                      max_players: int = MAX_PLAYERS) -> ImportanceDisplay:
        names = results["players"][:max_players]
        norm, err = {}, {}
        for method, imp in results["importance"].items():
            total = float(np.nansum(np.abs(np.array([np.nan if v is None else v for v in imp.values()],
                                                    dtype=np.float64))))
            scale = 1.0 / total if total > 0 else 0.0
            norm[method] = [results["importance_normalized"][method][n] for n in names]
            err[method] = [(np.nan if results["std_error"][method][n] is None else results["std_error"][method][n])
                           * scale for n in names]
        index = pd.Index(names, name=results["level"])
        return cls(pd.DataFrame(norm, index=index, dtype=np.float64), pd.DataFrame(err, index=index, dtype=np.float64),
                   level=results["level"], planted=planted, n_players=len(results["players"]))

    def _size(self) -> tuple[float, float]:
        return 7.5, _height(len(self.normalized), 0.12 + 0.1 * self.normalized.shape[1])

    def plot(self, ax: Any = None) -> ImportanceDisplay:
        """Draw the bars into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        methods, names = list(self.normalized.columns), [str(n) for n in self.normalized.index]
        m = len(methods)
        height = 0.8 / m
        y = np.arange(len(names))
        for j, method in enumerate(methods):
            ax.barh(y - 0.4 + height * (j + 0.5), self.normalized[method].to_numpy(), height=height,
                    xerr=self.errors[method].to_numpy(), color=COLOURS[j % len(COLOURS)], label=method,
                    error_kw={"ecolor": "0.2", "capsize": 2, "elinewidth": 0.8})
        ax.axvline(0, color="0.3", lw=0.8)
        _player_axis(ax, names, self.planted, self.level)
        ax.set_xlabel("normalised importance (share of total |importance|, unitless)")
        ax.set_title(f"Importance per {self.level}")
        self._legend(ncols=min(m, 4), title="method")
        return self._done()


class DistributionDisplay(Display):
    """Box plot with a jittered strip of per-sample values, one panel per method.

    Parameters
    ----------
    values : mapping of str to list of ndarray
        Per method, one 1-D array of finite per-sample values per player drawn.
    names : list of str
        The players drawn, top first.
    units : mapping of str to str
        Per method, the unit of its values (for the axis label).
    colours : mapping of str to str
        Per method, its colour (the importance figure's).
    level, planted
        As for :class:`ImportanceDisplay`.
    """

    def __init__(self, values: Mapping[str, list[np.ndarray]], names: list[str], *, units: Mapping[str, str],
                 colours: Mapping[str, str], level: str = "feature", planted: str | None = None):
        self.values, self.names, self.units, self.colours = dict(values), list(names), units, colours
        self.level, self.planted = level, planted

    @classmethod
    def from_explanation(cls, explanation: Explanation, *, planted: str | None = None,
                         max_players: int = MAX_PLAYERS, ax: Any = None) -> DistributionDisplay:
        """Compute from one explanation with ``(sample, player)`` values and plot."""
        return cls.from_report(_as_report(explanation, planted), max_players=max_players, ax=ax)

    @classmethod
    def from_report(cls, report: AttributionReport, *, max_players: int = MAX_PLAYERS,
                    ax: Any = None) -> DistributionDisplay:
        """Compute from the report's explanations that have ``(sample, player)`` values and plot."""
        report = _check_report(report)
        display = cls._from_results(report.to_dict(), report.explanations, report.planted, max_players)
        if display is None:
            raise ValueError("no explanation has per-sample (sample, player) values to draw")
        return display.plot(ax=ax)

    @classmethod
    def _from_results(cls, results: Mapping[str, Any], explanations: Mapping[str, Explanation],
                      planted: str | None, max_players: int = MAX_PLAYERS) -> DistributionDisplay | None:
        usable = {k: e for k, e in explanations.items() if e.values is not None and e.axes == ("sample", e.level)}
        if not usable:
            return None
        names = results["players"][:max_players]
        values = {}
        for key, expl in usable.items():
            cols = [expl.values[:, expl.names.index(n)].astype(np.float64) for n in names]
            values[key] = [c[np.isfinite(c)] for c in cols]
        colours = {k: COLOURS[list(explanations).index(k) % len(COLOURS)] for k in usable}
        return cls(values, names, units={k: unit_of(e) for k, e in usable.items()}, colours=colours,
                   level=results["level"], planted=planted)

    def _n_panels(self) -> int:
        return len(self.values)

    def _size(self) -> tuple[float, float]:
        return 1.8 + 3.6 * len(self.values), _height(len(self.names), 0.32)

    def plot(self, ax: Any = None) -> DistributionDisplay:
        """Draw one panel per method into ``ax`` (a sequence of that many Axes, or ``None``)."""
        axes = self._axes(ax, sharey=True)
        rng = np.random.default_rng(JITTER_SEED)
        for j, (panel, (key, data)) in enumerate(zip(axes, self.values.items(), strict=True)):
            for i, col in enumerate(data):
                strip = col if col.size <= MAX_POINTS else col[rng.choice(col.size, MAX_POINTS, replace=False)]
                jitter = rng.uniform(-0.28, 0.28, size=strip.size)
                panel.scatter(strip, i + jitter, s=3, alpha=0.25, color=self.colours[key], linewidths=0, zorder=1)
            panel.boxplot([d if d.size else np.array([np.nan]) for d in data], positions=np.arange(len(data)),
                          widths=0.6, showfliers=False, manage_ticks=False, zorder=2,
                          medianprops={"color": "black", "lw": 1.6}, **_BOX_KW)
            panel.axvline(0, color="0.3", lw=0.8)
            _player_axis(panel, self.names, self.planted, self.level)
            if j:
                panel.set_ylabel("")
                panel.tick_params(axis="y", labelleft=False)
            panel.set_xlabel(wrap(f"attribution value ({self.units[key]})"))
            panel.set_title(key)
        if self._own_figure:
            self.figure_.suptitle(f"Per-sample attributions per {self.level}")
        return self._done()


class RepeatsDisplay(Display):
    """Repeat-level importance (e.g. permutation importance): the repeats as dots, mean ± standard error.

    Parameters
    ----------
    scores : mapping of str to ndarray
        Per method, ``(n_repeats, n_players_drawn)`` scores, columns in ``names`` order.
    names : list of str
        The players drawn, top first.
    axis_labels : mapping of str to str
        Per method, what a score measures (the x-axis label).
    colours : mapping of str to str
    level, planted
        As for :class:`ImportanceDisplay`.
    """

    def __init__(self, scores: Mapping[str, np.ndarray], names: list[str], *, axis_labels: Mapping[str, str],
                 colours: Mapping[str, str], level: str = "feature", planted: str | None = None):
        self.scores, self.names, self.axis_labels, self.colours = dict(scores), list(names), axis_labels, colours
        self.level, self.planted = level, planted

    @classmethod
    def from_explanation(cls, explanation: Explanation, *, planted: str | None = None,
                         max_players: int = MAX_PLAYERS, ax: Any = None) -> RepeatsDisplay:
        """Compute from one explanation with at least two repeats of ``scores`` and plot."""
        return cls.from_report(_as_report(explanation, planted), max_players=max_players, ax=ax)

    @classmethod
    def from_report(cls, report: AttributionReport, *, max_players: int = MAX_PLAYERS,
                    ax: Any = None) -> RepeatsDisplay:
        """Compute from the report's explanations with at least two repeats and plot."""
        report = _check_report(report)
        display = cls._from_results(report.to_dict(), report.explanations, report.planted, max_players)
        if display is None:
            raise ValueError("no explanation has repeat-level scores (at least 2 repeats) to draw")
        return display.plot(ax=ax)

    @classmethod
    def _from_results(cls, results: Mapping[str, Any], explanations: Mapping[str, Explanation],
                      planted: str | None, max_players: int = MAX_PLAYERS) -> RepeatsDisplay | None:
        usable = {k: e for k, e in explanations.items() if e.scores is not None and e.scores.shape[0] > 1}
        if not usable:
            return None
        names = results["players"][:max_players]
        scores = {k: e.scores[:, [e.names.index(n) for n in names]].astype(np.float64) for k, e in usable.items()}
        colours = {k: COLOURS[list(explanations).index(k) % len(COLOURS)] for k in usable}
        return cls(scores, names, axis_labels={k: importance_label(e) for k, e in usable.items()}, colours=colours,
                   level=results["level"], planted=planted)

    def _n_panels(self) -> int:
        return len(self.scores)

    def _size(self) -> tuple[float, float]:
        return 1.8 + 3.6 * len(self.scores), _height(len(self.names), 0.3) + 0.3

    def plot(self, ax: Any = None) -> RepeatsDisplay:
        """Draw one panel per method into ``ax`` (a sequence of that many Axes, or ``None``)."""
        axes = self._axes(ax, sharey=True)
        rng = np.random.default_rng(JITTER_SEED)
        y = np.arange(len(self.names))
        for j, (panel, (key, scores)) in enumerate(zip(axes, self.scores.items(), strict=True)):
            for i in range(len(self.names)):
                panel.scatter(scores[:, i], i + rng.uniform(-0.15, 0.15, size=scores.shape[0]), s=14,
                              color=self.colours[key], alpha=0.6, linewidths=0, zorder=2)
            r = scores.shape[0]
            panel.errorbar(scores.mean(axis=0), y, xerr=scores.std(axis=0, ddof=1) / np.sqrt(r), fmt="D",
                           color="black", ms=4, capsize=3, lw=1, zorder=3, label="mean ± standard error")
            panel.axvline(0, color="0.3", lw=0.8)
            _player_axis(panel, self.names, self.planted, self.level)
            if j:
                panel.set_ylabel("")
                panel.tick_params(axis="y", labelleft=False)
            panel.set_xlabel(wrap(self.axis_labels[key], 40))
            panel.set_title(f"{key} ({r} repeats)")
        if self._own_figure:
            self.figure_.suptitle(f"Permutation repeats per {self.level}")
        self._legend()
        return self._done()


class TrainingDisplay(Display):
    """Training and validation loss per epoch, the best (lowest validation loss) epoch marked.

    Parameters
    ----------
    history : pandas.DataFrame
        Columns ``epoch, train_loss, val_loss`` (NaN allowed).
    """

    def __init__(self, history: pd.DataFrame):
        self.history = history

    @classmethod
    def from_history(cls, history: pd.DataFrame, *, ax: Any = None) -> TrainingDisplay:
        """Plot a training history (e.g. ``featurelens.models.train(...).history``)."""
        if not isinstance(history, pd.DataFrame):
            raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
        missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
        if missing or len(history) == 0:
            raise ValueError(f"history needs rows and the columns {list(HISTORY_COLUMNS)}; "
                             f"it has {len(history)} rows and {list(map(str, history.columns))}")
        return cls(history.loc[:, list(HISTORY_COLUMNS)].reset_index(drop=True)).plot(ax=ax)

    @classmethod
    def from_report(cls, report: AttributionReport, *, ax: Any = None) -> TrainingDisplay:
        """Plot the training history of an :class:`AttributionReport`."""
        report = _check_report(report)
        if report.history is None:
            raise ValueError("the report has no training history (history=None)")
        return cls(report.history).plot(ax=ax)

    def plot(self, ax: Any = None) -> TrainingDisplay:
        """Draw the two loss curves into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        epoch, train, val = (self.history[c].to_numpy(dtype=np.float64) for c in ("epoch", "train_loss", "val_loss"))
        ax.plot(epoch, train, marker="o", ms=3, color=COLOURS[0], label="training loss")
        ax.plot(epoch, val, marker="o", ms=3, color=COLOURS[1], label="validation loss")
        if not np.all(np.isnan(val)):
            i = int(np.nanargmin(val))
            ax.axvline(epoch[i], color="0.4", ls="--", lw=1)
            ax.scatter([epoch[i]], [val[i]], s=90, marker="*", color=HIGHLIGHT, zorder=3,
                       label=f"best epoch ({format_number(self.history['epoch'].iloc[i])})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (training objective, mean per sample)")
        ax.set_title("Training history")
        ax.grid(alpha=0.3)
        self._legend(ncols=3)
        return self._done()


class RankDisplay(Display):
    """Scores against their rank on log–log axes (pykan's rank plot for many inputs).

    Rank 1 is the largest score. Zero scores cannot be drawn on a log axis and
    are left out (the title says how many).

    Parameters
    ----------
    scores : ndarray
        ``(n_features,)`` scores, any order.
    """

    def __init__(self, scores: np.ndarray):
        self.scores = np.asarray(scores, dtype=np.float64)

    @classmethod
    def from_scores(cls, scores: Any, *, ax: Any = None) -> RankDisplay:
        """Plot EdgeScores, a per-feature Explanation, a pandas Series or a 1-D array of scores."""
        return cls(score_vector(scores)[0]).plot(ax=ax)

    def _size(self) -> tuple[float, float]:
        return 5.0, 4.0

    def plot(self, ax: Any = None) -> RankDisplay:
        """Draw the rank plot into ``ax`` (a new figure when ``None``); returns ``self``."""
        (ax,) = self._axes(ax)
        ranked = np.sort(self.scores)[::-1]
        ranks = np.arange(1, ranked.size + 1)
        pos = ranked > 0
        ax.scatter(ranks[pos], ranked[pos], s=14, color=COLOURS[0])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rank of input feature")
        ax.set_ylabel("feature score")
        if not pos.all():
            ax.set_title(f"{int((~pos).sum())} zero score(s) not shown")
        return self._done()
