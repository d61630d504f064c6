"""Tests for featurelens.datasets._ehr: the synthetic EHR generator and its planted effects."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from featurelens.datasets import EHRData, make_ehr


def _probe_auc(X_tr, y_tr, X_te, y_te) -> tuple[float, np.ndarray]:
    model = LogisticRegression(max_iter=2000).fit(X_tr, y_tr)
    p = model.predict_proba(X_te)[:, 1]
    return roc_auc_score(y_te, p), p


def test_layout_and_seed():
    d = make_ehr(50, n_visits=4, random_state=1)
    assert isinstance(d, EHRData)
    assert d.X.shape == (50, 4, 12) and d.X.dtype == np.float32 and d.y.shape == (50,)
    assert d.groups["clinical"] == ["heart_rate", "blood_pressure", "temperature", "respiratory_rate",
                                    "oxygen_saturation", "lab_values", "medications"]
    assert d.groups["administrative"] == ["admission_type", "insurance_type", "facility_type",
                                          "admission_day", "length_of_stay"]
    assert d.spec().is_partition
    # the long table holds the same numbers, patient-major, oldest visit first
    assert len(d.visits) == 200
    np.testing.assert_array_equal(d.visits[d.feature_names].to_numpy(np.float32).reshape(50, 4, 12), d.X)
    np.testing.assert_array_equal(d.visits["visit"].to_numpy()[:4], np.arange(4))
    np.testing.assert_array_equal(d.visits.groupby("patient_id")["outcome"].first().to_numpy(), d.y)
    np.testing.assert_array_equal(d.X[:, 0, 8], d.insurance)
    last = d.last_visit()
    np.testing.assert_array_equal(last[d.feature_names].to_numpy(np.float32), d.X[:, -1])
    e = make_ehr(50, n_visits=4, random_state=1)
    np.testing.assert_array_equal(d.X, e.X)
    np.testing.assert_array_equal(d.y, e.y)


def test_value_ranges():
    d = make_ehr(400, random_state=2)
    v = d.visits
    assert set(np.unique(v["admission_type"])) <= {0.0, 1.0, 2.0}
    assert set(np.unique(v["insurance_type"])) == {0.0, 1.0, 2.0}
    assert set(np.unique(v["facility_type"])) == {0.0, 1.0}
    assert v["admission_day"].between(0, 6).all() and (v["length_of_stay"] >= 1).all()
    assert (v["oxygen_saturation"] <= 100).all() and (v["medications"] >= 0).all()
    # insurance and facility are constant within a patient
    assert (v.groupby("patient_id")[["insurance_type", "facility_type"]].nunique() == 1).all().all()
    assert v["heart_rate"].mean() == pytest.approx(80.0, abs=3.0)


@pytest.fixture(scope="module")
def plain() -> EHRData:
    return make_ehr(4000, shortcut=0.0, random_state=0)


def test_outcome_follows_clinical_not_administrative(plain):
    X, y = plain.X[:, -1, :], plain.y
    assert 0.3 < y.mean() < 0.5
    auc_clin, _ = _probe_auc(X[:2000, :7], y[:2000], X[2000:, :7], y[2000:])
    auc_admin, _ = _probe_auc(X[:2000, 7:], y[:2000], X[2000:, 7:], y[2000:])
    assert auc_clin > 0.85
    assert abs(auc_admin - 0.5) < 0.05  # independent of the outcome by construction


def test_planted_shortcut_is_detectable():
    d = make_ehr(4000, shortcut=0.8, random_state=0)
    X, y = d.X[:, -1, :], d.y
    auc_admin, _ = _probe_auc(X[:2000, 7:], y[:2000], X[2000:, 7:], y[2000:])
    assert auc_admin > 0.85
    encodes = (d.X[:, :, 7] == 2.0 * y[:, None]).all(axis=1)
    # shortcut patients (80 %) always encode y; others do so by chance ((0.5 or 0.2)^10)
    assert encodes.mean() == pytest.approx(0.8, abs=0.03)
    assert d.ground_truth["shortcut_group"] == "administrative"
    assert d.ground_truth["shortcut_feature"] == "admission_type"
    assert make_ehr(10, random_state=0).ground_truth["shortcut_group"] is None


def test_insurance_noise_lowers_subgroup_auc():
    gaps = {}
    for mult in (1.0, 3.0):
        d = make_ehr(6000, insurance_noise=mult, random_state=4)
        X, y, ins = d.X[:, -1, :7], d.y, d.insurance[3000:]
        _, p = _probe_auc(X[:3000], y[:3000], X[3000:], y[3000:])
        auc = [roc_auc_score(y[3000:][ins == k], p[ins == k]) for k in range(3)]
        gaps[mult] = min(auc[0], auc[1]) - auc[2]
    assert gaps[3.0] > 0.04  # uninsured patients are measured with 3x the noise
    assert abs(gaps[1.0]) < 0.03


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"n_patients": 0}, ValueError, "n_patients must be >= 1"),
    ({"n_visits": 0}, ValueError, "n_visits must be >= 1"),
    ({"shortcut": 1.5}, ValueError, "shortcut must be in"),
    ({"insurance_noise": -1.0}, ValueError, "insurance_noise must be in"),
    ({"prevalence_shift": "high"}, TypeError, "prevalence_shift must be a number"),
    ({"random_state": "x"}, TypeError, "random_state must be None"),
])
def test_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_ehr(**{"n_patients": 10, **kwargs})
