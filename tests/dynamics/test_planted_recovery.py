"""The HMM recovers the phases that featurelens.datasets.make_planted_runs plants."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from featurelens.datasets import make_planted_runs
from featurelens.dynamics import fit_hmm


@pytest.mark.parametrize("ctype", ["full", "diag"])
def test_decoded_states_recover_planted_phases(ctype):
    runs, states, names = make_planted_runs(n_runs=12, n_steps=150, n_features=5, n_phases=4, random_state=3)
    fit = fit_hmm(runs, n_states=4, covariance_type=ctype, n_restarts=3, random_state=0, feature_names=names)
    decoded = fit.model.decode(runs)
    ari = adjusted_rand_score(np.concatenate(states), np.concatenate(decoded))
    assert ari >= 0.9
    # a one-state model cannot recover anything: the score is not trivially high
    one = fit_hmm(runs, n_states=1, n_restarts=1, random_state=0).model.decode(runs)
    assert adjusted_rand_score(np.concatenate(states), np.concatenate(one)) == 0.0
