"""Training map, timelines and model-selection displays: what they draw, legibility, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from featurelens.dynamics import GaussianHMM
from featurelens.report import ModelSelectionDisplay, StateTimelineDisplay, TrainingMapDisplay
from featurelens.report._dynamics_figures import state_colours, text_colour


@pytest.fixture()
def model():
    transmat = np.array([[0.9, 0.08, 0.02], [0.0, 0.95, 0.05], [0.01, 0.0, 0.99]])
    return GaussianHMM(startprob=[1.0, 0.0, 0.0], transmat=transmat, means=np.zeros((3, 2)),
                       covars=np.ones((3, 2)), covariance_type="diag")


PATHS = [np.array([0, 0, 1, 1, 2, 2]), np.array([0, 2, 2, 2]), np.array([0, 0, 0, 1, 1, 1, 1, 2])]
# three states in three columns with arrows that skip the middle one both ways (0 → 2 and 2 → 0),
# the digits example's layout whose labels used to sit on the middle node
SKIPPING = [np.array([0] * 5 + [1] * 5 + [2] * 5), np.array([0] * 3 + [2] * 8 + [0] * 2 + [2] * 2),
            np.array([0] * 4 + [1] * 6 + [2] * 5)]
# four states in a row with arrows skipping one and two states both ways: on the old figure the labels of
# 0 → 2 and 2 → 0 sat on state 1's disc
FOUR_IN_ROW = [np.array([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4), np.array([0] * 3 + [3] * 9 + [0] * 2 + [3] * 2),
               np.array([0] * 4 + [2] * 8 + [0] * 4)]


def _luminance(colour) -> float:
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_node_labels_contrast_with_their_fill(model):
    display = TrainingMapDisplay.from_model(model, PATHS)
    circles = [p for p in display.ax_.patches if isinstance(p, Circle)]
    assert len(circles) == 3
    for circle in circles:
        label = next(t for t in display.ax_.texts if np.allclose(t.get_position(), circle.center))
        assert _contrast(label.get_color(), circle.get_facecolor()) >= 4.5, label.get_text()
    # dark-blue state 0 (Okabe–Ito #0072B2) and black state 7 get white text, the light ones black
    colours = state_colours(8)
    assert text_colour(colours[0]) == "white" and text_colour(colours[7]) == "white"
    assert text_colour(colours[1]) == "black" and text_colour(colours[6]) == "black"
    assert min(_contrast(text_colour(c), c) for c in colours) >= 4.5


@pytest.mark.parametrize("layout", ["skipping", "four_in_row"])
def test_edge_labels_cover_no_node_and_no_other_label(model, layout):
    if layout == "four_in_row":
        k = 4
        model = GaussianHMM(np.ones(k) / k, 0.9 * np.eye(k) + 0.1 / k, np.zeros((k, 2)), np.ones((k, 2)), "diag")
    paths = SKIPPING if layout == "skipping" else FOUR_IN_ROW
    display = TrainingMapDisplay.from_model(model, paths)
    fig, ax = display.figure_, display.ax_
    edges = [(0, 1), (0, 2), (1, 2), (2, 0)] if layout == "skipping" else [(0, 1), (0, 2), (0, 3), (1, 2), (2, 0),
                                                                          (2, 3), (3, 0)]
    assert sorted(display.graph.edges) == edges
    assert len({round(float(p[1]), 6) for p in display.positions_.values()}) == 1  # the nodes are collinear
    fig.draw_without_rendering()
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    centres = [circle.center for circle in circles]
    edge_labels = [t for t in ax.texts if "(n=" in t.get_text()]
    node_labels = [t for t in ax.texts if t.get_text().split("\n")[-1].startswith("stay")]
    assert len(edge_labels) == len(edges) and len(node_labels) == model.n_states
    boxes = [t.get_window_extent() for t in edge_labels]
    for box in boxes:
        for circle in circles:  # the label box does not reach into any node disc (display coordinates)
            c = ax.transData.transform(circle.center)
            r = abs(ax.transData.transform((circle.center[0] + circle.radius, 0))[0]
                    - ax.transData.transform((circle.center[0], 0))[0])
            nearest = np.clip(c, [box.x0, box.y0], [box.x1, box.y1])
            assert np.hypot(*(nearest - c)) >= r, f"edge label overlaps the node at {c}"
        for node_label in node_labels:
            assert not box.overlaps(node_label.get_window_extent())
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not boxes[a].overlaps(boxes[b])
    # every label sits on its own arc, at the probability and count of its edge
    texts = sorted(t.get_text() for t in edge_labels)
    want = sorted(f"{d['prob']:.3f}\n(n={d['count']})" for _, _, d in display.graph.edges(data=True))
    assert texts == want and centres


def _frames(paths, scale=1.0):
    return [pd.DataFrame({"step": np.arange(len(p)) * 10, "train_loss": scale * np.exp(-np.arange(len(p)) / 4),
                          "val_loss": 1.1 * scale * np.exp(-np.arange(len(p)) / 4)}) for p in paths]


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_timelines_have_a_y_label_and_several_log_ticks(scale):
    # losses within about one decade: matplotlib's default log locator shows a single tick there
    paths = [np.array([0, 0, 1, 1, 2, 2, 2, 2, 2, 2])] * 4
    display = StateTimelineDisplay(_frames(paths, scale), paths, ["a", "b", "c", "d"], n_states=3, sort_by="step",
                                   columns=["train_loss", "val_loss"]).plot()
    assert display.log_y_
    display.figure_.draw_without_rendering()
    for ax in display.axes_:
        lo, hi = sorted(ax.get_ylim())
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
        assert len(ticks) >= 3, ticks
    first = [ax for ax in display.axes_ if ax.get_subplotspec().is_first_col()]
    assert all(ax.get_ylabel() == "loss (log scale)" for ax in first)
    labels = [t.get_text() for t in display.axes_[0].get_yticklabels() if t.get_text()]
    assert labels and all("$" not in s for s in labels)  # plain numbers (e.g. 0.2, 0.5), no 10^x


def test_timeline_display_draws_every_checkpoint_in_its_state_colour():
    paths = [np.array([0, 0, 1, 1, 2, 2]), np.array([0, 2, 2, 2])]
    display = StateTimelineDisplay(_frames(paths), paths, ["a", "b"], n_states=3, sort_by="step",
                                   columns=["train_loss"]).plot()
    colours = state_colours(3)
    for ax, path, frame in zip(display.axes_, paths, _frames(paths), strict=True):
        dots = ax.collections[0]
        np.testing.assert_allclose(dots.get_offsets(), np.c_[frame["step"], frame["train_loss"]])
        np.testing.assert_allclose(dots.get_facecolors()[:, :3], [to_rgb(colours[s]) for s in path])
    # on the caller's axes: one per run
    fig = Figure()
    axes = fig.subplots(1, 2)
    again = StateTimelineDisplay(_frames(paths), paths, ["a", "b"], n_states=3, sort_by="step",
                                 columns=["train_loss"]).plot(ax=axes)
    assert again.figure_ is fig and list(again.axes_) == list(axes)
    with pytest.raises(ValueError, match=r"ax must hold one Axes per run \(2\), got 1"):
        StateTimelineDisplay(_frames(paths), paths, ["a", "b"], n_states=3, sort_by="step",
                             columns=["train_loss"]).plot(ax=axes[:1])
    with pytest.raises(ValueError, match=r"columns \['nope'\] are missing"):
        StateTimelineDisplay(_frames(paths), paths, ["a", "b"], n_states=3, sort_by="step", columns=["nope"])
    with pytest.raises(ValueError, match="columns is empty"):
        StateTimelineDisplay(_frames(paths), paths, ["a", "b"], n_states=3, sort_by="step", columns=[])


def test_training_map_on_the_callers_axes_and_errors(model):
    fig = Figure()
    ax = fig.add_subplot()
    display = TrainingMapDisplay.from_model(model, PATHS, ax=ax)
    assert display.ax_ is ax and display.figure_ is fig
    assert ax.get_title() == "Training map (3 states, 3 runs)"
    # left to right by first visit: 0 (0.0), then 1 (0.354), then 2 (0.597)
    x = {n: p[0] for n, p in display.positions_.items()}
    assert x[0] < x[1] < x[2]
    with pytest.raises(TypeError, match=r"graph must be a networkx\.DiGraph"):
        TrainingMapDisplay({}, n_runs=1)


def test_model_selection_display():
    rng = np.random.default_rng(0)
    table = pd.DataFrame([{"n_states": k, "restart": r, "test_loglik": -100 / k + rng.normal(),
                           "aic": 10 * k, "bic": 12 * k} for k in range(1, 5) for r in range(3)])
    display = ModelSelectionDisplay(table, recommended=3).plot()
    assert not display.on_test_ and list(display.ks_) == [1, 2, 3, 4]
    mean_line = display.ax_.containers[0].lines[0]  # the mean ± std error bar
    np.testing.assert_allclose(np.asarray(mean_line.get_ydata(), dtype=float),
                               table.groupby("n_states")["test_loglik"].mean())
    np.testing.assert_allclose(display.twin_ax_.lines[0].get_ydata(), [10, 20, 30, 40])
    with pytest.raises(ValueError, match=r"table is missing column\(s\) \['bic'\]"):
        ModelSelectionDisplay(table.drop(columns="bic"))
