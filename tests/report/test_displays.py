"""The Display objects: the numbers they draw, drawing into given axes, and report figure == notebook figure."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from featurelens.attribution import AttributionReport, Explanation
from featurelens.internals import InternalsSummary
from featurelens.reliance import MitigationTable, RobustnessCurve, SpuriousReport, Thresholds
from featurelens.report import (
    DetectionDisplay,
    DistributionDisplay,
    ImportanceDisplay,
    InteractionDisplay,
    LayerSummaryDisplay,
    MitigationDisplay,
    OverlapDisplay,
    RankDisplay,
    RepeatsDisplay,
    RobustnessDisplay,
    TrainingDisplay,
    save,
)


def _bar_widths(ax) -> np.ndarray:
    return np.array([p.get_width() for p in ax.patches])


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def test_importance_bars_are_the_normalised_importance(attribution):
    display = ImportanceDisplay.from_explanation(attribution, planted="spurious")
    imp = np.abs(attribution.values).mean(axis=0)
    order = np.argsort(-imp)
    np.testing.assert_allclose(_bar_widths(display.ax_), (imp / imp.sum())[order], rtol=1e-12)
    se = np.abs(attribution.values).std(axis=0, ddof=1) / np.sqrt(len(attribution.values))
    np.testing.assert_allclose(display.errors["shap"].to_numpy(), (se / imp.sum())[order], rtol=1e-12)
    labels = [t.get_text() for t in display.ax_.get_yticklabels()]
    assert labels[0] == "spurious (planted)" and display.figure_ is display.ax_.figure


def test_displays_draw_into_given_axes(attribution, permutation):
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    display = ImportanceDisplay.from_report(AttributionReport({"shap": attribution, "perm": permutation}), ax=ax)
    assert display.ax_ is ax and display.figure_ is fig and len(ax.patches) == 8
    assert ax.get_legend() is not None and not fig.legends  # inside the given axes, not below the figure
    again = display.plot(ax=fig.add_subplot(2, 1, 2))
    assert again is display and len(display.ax_.patches) == 8


def test_wrong_number_of_axes_is_refused(attribution):
    fig = Figure()
    table = pd.DataFrame({"group": ["a"], "reliance_permutation": [0.1], "relation_spread": [0.2]})
    with pytest.raises(ValueError, match="ax must be a sequence of 2 Axes for DetectionDisplay, got 1 item"):
        DetectionDisplay(table).plot(ax=fig.add_subplot())
    with pytest.raises(ValueError, match="ax must be one matplotlib Axes for ImportanceDisplay"):
        ImportanceDisplay.from_explanation(attribution, ax=[1, 2])
    with pytest.raises(TypeError, match="explanation must be an Explanation, got dict"):
        ImportanceDisplay.from_explanation({})
    with pytest.raises(ValueError, match="is not among the explained names"):
        ImportanceDisplay.from_explanation(attribution, planted="nope")


def test_report_figures_equal_the_displays(tmp_path, attribution, permutation, history):
    report = AttributionReport({"shap": attribution, "perm": permutation}, history=history)
    save(report, tmp_path / "rep", dpi=50)
    for name, display in [("importance", ImportanceDisplay.from_report(report)),
                          ("distribution", DistributionDisplay.from_report(report)),
                          ("permutation_repeats", RepeatsDisplay.from_report(report)),
                          ("training", TrainingDisplay.from_report(report))]:
        assert (tmp_path / "rep" / f"{name}.png").read_bytes() == _png(display.figure_), name


def test_repeats_show_mean_and_standard_error(permutation):
    display = RepeatsDisplay.from_explanation(permutation)
    order = np.argsort(-permutation.scores.mean(axis=0))
    centres = display.ax_.lines[0].get_xdata()
    np.testing.assert_allclose(centres, permutation.scores.mean(axis=0)[order])
    with pytest.raises(ValueError, match="no explanation has repeat-level scores"):
        RepeatsDisplay.from_explanation(Explanation(np.ones((3, 2)), names=["a", "b"], axes=("sample", "feature"),
                                                    method="ig"))


def test_repeats_axis_label_fits_in_the_figure():
    """Regression: in the demo's one-method figure the metric label ran past the figure's right edge."""
    scores = np.array([0.30, 0.05, 0.02, 0.0]) + np.random.default_rng(1).normal(scale=0.01, size=(5, 4))
    perm = Explanation(None, names=["spurious", "genuine_0", "genuine_1", "genuine_2"], axes=("sample", "group"),
                       method="permutation", scores=scores, params={"metric": "accuracy"})
    display = RepeatsDisplay.from_explanation(perm, planted="spurious")
    fig = display.figure_
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box, frame = display.ax_.xaxis.label.get_window_extent(renderer), fig.bbox
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1, (box, frame)
    assert display.ax_.get_xlabel() == "accuracy degradation when permuted\n(accuracy units)"


def test_training_marks_the_best_epoch(history):
    display = TrainingDisplay.from_history(history)
    star = display.ax_.collections[0].get_offsets()[0]
    assert tuple(star) == (5.0, pytest.approx(0.48))  # the lowest validation loss
    with pytest.raises(ValueError, match=r"history needs rows and the columns \['epoch', 'train_loss', 'val_loss'\]"):
        TrainingDisplay.from_history(history.drop(columns="val_loss"))


def test_rank_display_draws_positive_scores_on_log_axes():
    scores = 0.5 ** np.arange(100)
    scores[7] = 0.0
    display = RankDisplay.from_scores(scores)
    ax = display.ax_
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_title() == "1 zero score(s) not shown"
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (99, 2) and offsets[0, 0] == 1 and offsets[0, 1] == 1.0
    other = Figure()
    ax2 = other.add_subplot()
    assert RankDisplay.from_scores(pd.Series([0.3, 0.1, 0.2]), ax=ax2).figure_ is other
    np.testing.assert_array_equal(ax2.collections[0].get_offsets()[:, 1], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="scores hold NaN or inf"):
        RankDisplay.from_scores([1.0, np.nan])


def _curve(kind: str, metric: list[float]) -> RobustnessCurve:
    table = pd.DataFrame({"strength": [0.0, 0.5, 1.0], "metric": metric, "std": 0.0, "n_repeats": 1,
                          "degradation": [metric[0] - m for m in metric]})
    return RobustnessCurve(kind, "accuracy", True, table, clean=metric[0], auc=float(np.mean(metric)),
                           degradation_auc=0.0, perturbed=["a"])


def test_coinciding_robustness_curves_stay_distinguishable():
    """Regression: FGSM's curve was drawn with PGD's style and hidden under it."""
    same = [0.9, 0.6, 0.3]
    display = RobustnessDisplay.from_curves({"gaussian": _curve("gaussian", [0.9, 0.85, 0.8]),
                                             "fgsm": _curve("fgsm", same), "pgd": _curve("pgd", same)})
    lines = display.ax_.get_lines()
    assert [ln.get_label() for ln in lines] == ["gaussian", "fgsm", "pgd"]
    styles = [(ln.get_linestyle(), ln.get_marker()) for ln in lines]
    assert len(set(styles)) == 3 and len({ln.get_linestyle() for ln in lines}) == 3
    np.testing.assert_array_equal(lines[1].get_ydata(), same)
    assert display.ax_.get_ylabel() == "accuracy"


def test_detection_bars_and_verdict_colours():
    table = pd.DataFrame({"group": ["a", "b"], "reliance_permutation": [0.01, 0.2],
                          "reliance_permutation_se": [0.001, 0.01], "relation_spread": [0.05, np.nan],
                          "relied_upon": [False, True], "unstable": [True, True], "spurious": [False, True]})
    display = DetectionDisplay.from_report(SpuriousReport(table, {}, Thresholds(), "user", "auc", "auc"))
    left, right = display.axes_
    np.testing.assert_allclose(_bar_widths(left), [0.01, 0.2])
    np.testing.assert_allclose(_bar_widths(right), [0.05, 0.0])  # NaN spread drawn as 0
    assert display.verdicts == ["unstable", "spurious"]
    assert left.patches[1].get_facecolor()[:3] == pytest.approx((0xB2 / 255, 0x18 / 255, 0x2B / 255))


def test_interaction_and_overlap_heatmaps_hold_the_matrices():
    m = pd.DataFrame([[0.0, 0.3], [0.3, 0.0]], index=["f0", "f1"], columns=["f0", "f1"])
    display = InteractionDisplay.from_matrix(m, label="feature")
    np.testing.assert_array_equal(display.ax_.images[0].get_array(), m.to_numpy())
    assert display.ax_.get_xlabel() == "feature" and display.ax_.get_title() == "Pairwise interactions between features"
    layers = pd.DataFrame({"type": ["Linear", "ReLU"], "units": [8, 8], "samples": [10, 10],
                           "effective_rank": [3.5, 2.0], "interference": [0.2, np.nan]},
                          index=pd.Index(["0", "1"], name="layer"))
    summary = InternalsSummary(layers=layers, overlap={"input": pd.DataFrame([[1.0, 0.1], [0.1, 1.0]],
                                                                             index=["g", "h"], columns=["g", "h"])})
    over = OverlapDisplay.from_summary(summary)
    np.testing.assert_array_equal(over.ax_.images[0].get_array(), [[1.0, 0.1], [0.1, 1.0]])
    lay = LayerSummaryDisplay.from_summary(summary)
    np.testing.assert_allclose(_bar_widths(lay.axes_[0]), [8, 8, 3.5, 2.0])  # units, then effective rank
    np.testing.assert_allclose(_bar_widths(lay.axes_[1]), [0.2, 0.0])
    with pytest.raises(ValueError, match="without groups"):
        OverlapDisplay.from_summary(InternalsSummary(layers=layers))


def test_mitigation_panels_name_the_group():
    table = pd.DataFrame({"strategy": ["unmitigated", "dro"], "in_distribution": [0.9, 0.85],
                          "shifted": [0.5, 0.8], "reliance": [0.3, 0.05]})
    display = MitigationDisplay.from_table(MitigationTable(table, {}, {}, "accuracy", "calendar"))
    assert [label for _, label in display.panels] == ["in-distribution metric", "shifted metric",
                                                      "reliance on 'calendar'"]
    np.testing.assert_allclose(_bar_widths(display.axes_[1]), [0.5, 0.8])
