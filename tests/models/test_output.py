"""OutputSelector: tuple outputs, links, targets, and every error path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurelens.models import OutputSelector


def _out(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def test_scalar_outputs_need_no_target():
    for raw in (_out(5), _out(5, 1)):
        sel = OutputSelector()
        torch.testing.assert_close(sel(raw, 5), raw.reshape(5))
        assert sel.n_outputs == 1
    torch.testing.assert_close(OutputSelector(target=0)(_out(5, 1), 5), _out(5, 1)[:, 0])
    assert OutputSelector(target="all")(_out(5), 5).shape == (5, 1)


def test_int_tuple_and_all_targets():
    raw = _out(4, 3)
    torch.testing.assert_close(OutputSelector(target=2)(raw, 4), raw[:, 2])
    torch.testing.assert_close(OutputSelector(target=np.int64(1))(raw, 4), raw[:, 1])
    sel = OutputSelector(target="all")
    assert sel.all_targets and torch.equal(sel(raw, 4), raw) and sel.n_outputs == 3
    grid = _out(4, 2, 3)
    torch.testing.assert_close(OutputSelector(target=(1, 2))(grid, 4), grid[:, 1, 2])
    assert OutputSelector(target=(np.int64(0), 1)).target == (0, 1)


def test_links():
    raw = _out(6, 3)
    torch.testing.assert_close(OutputSelector(target=1, link="sigmoid")(raw, 6), torch.sigmoid(raw[:, 1]))
    torch.testing.assert_close(
        OutputSelector(target="all", link="softmax")(raw, 6), torch.softmax(raw, dim=1)
    )
    probs = torch.sigmoid(_out(6).double())
    torch.testing.assert_close(OutputSelector(link="logit")(probs, 6), _out(6).double())
    assert OutputSelector(link=None).link == "identity"


def test_tuple_outputs():
    logits, aux = _out(4, 2), _out(4)
    torch.testing.assert_close(OutputSelector(output=0, target=1)((logits, aux), 4), logits[:, 1])
    torch.testing.assert_close(OutputSelector(output=-1)([logits, aux], 4), aux)
    torch.testing.assert_close(OutputSelector(output=0)(aux, 4), aux)  # output=0 of a single tensor


def test_describe_is_json_friendly():
    assert OutputSelector(target=(1, 2), output=0, link="softmax").describe() == {
        "target": [1, 2],
        "output": 0,
        "link": "softmax",
    }
    assert OutputSelector().describe() == {"target": None, "output": None, "link": "identity"}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": "first"}, TypeError, "target must be None, an int, a tuple of ints or 'all', got 'first'"),
        ({"target": 1.5}, TypeError, "target must be None, an int"),
        ({"target": True}, TypeError, "target must be None, an int"),
        ({"target": [0]}, TypeError, r"target must be None, an int.*got \[0\]"),
        ({"target": (0, "a")}, TypeError, "target must be None, an int"),
        ({"target": -1}, ValueError, "target must be >= 0, got -1"),
        ({"output": "logits"}, TypeError, "output must be None or an int index"),
        ({"output": False}, TypeError, "output must be None or an int index"),
        ({"link": "tanh"}, ValueError, "link must be one of 'identity', 'sigmoid', 'softmax', 'logit'; got 'tanh'"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        OutputSelector(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "raw", "error", "match"),
    [
        ({}, (_out(4), _out(4)), TypeError, r"returned a tuple of 2 outputs; pass output=<index> \(CLI: --output\)"),
        ({"output": 2}, [_out(4), _out(4)], ValueError, "output=2 is out of range for a model returning 2 outputs"),
        ({"output": -3}, (_out(4), _out(4)), ValueError, "output=-3 is out of range"),
        ({"output": 1}, _out(4), ValueError, "output=1 was given but the model returns a single tensor"),
        ({"output": 0}, ({"logits": 1},), TypeError, "the model output must be a tensor, got dict"),
        ({}, np.zeros(4), TypeError, "the model output must be a tensor, got ndarray"),
        ({}, _out(3), ValueError, r"output has shape \(3,\) for a batch of 4 rows; its first axis must be the batch"),
        ({}, torch.tensor(1.0), ValueError, r"output has shape \(\) for a batch of 4 rows"),
        ({"link": "softmax"}, _out(4, 1), ValueError, "link='softmax' needs a model with 2 or more outputs"),
        ({"link": "logit"}, _out(4) + 2, ValueError, r"link='logit' needs probabilities strictly inside"),
        ({"link": "logit"}, torch.ones(4), ValueError, r"reaches 0, 1 or beyond"),
        ({"target": 1}, _out(4), ValueError, "target=1 is out of range: the model has a single output"),
        ({}, _out(4, 3), ValueError,
         r"the model has 3 outputs \(shape \(3,\)\); pass target=<int in \[0, 3\)> or target='all'"),
        ({"target": 3}, _out(4, 3), ValueError, "target=3 is out of range for a model with 3 outputs"),
        ({"target": (1,)}, _out(4, 2, 3), ValueError, r"target=\(1,\) does not index the model's output dims \(2, 3\)"),
        ({"target": (2, 0)}, _out(4, 2, 3), ValueError, r"target=\(2, 0\) does not index"),
    ],
)
def test_call_errors(kwargs, raw, error, match):
    with pytest.raises(error, match=match):
        OutputSelector(**kwargs)(raw, 4)
