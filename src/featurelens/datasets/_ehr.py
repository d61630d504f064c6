"""Synthetic electronic health records: clinical vs administrative features.

The healthcare analysis of the superposition and spurious-correlation notebook
feeds sequences of visits with seven clinical features (heart rate, blood
pressure, temperature, respiratory rate, oxygen saturation, lab values,
medications) and five administrative ones (admission type, insurance type,
facility type, admission day, length of stay) to a transformer, asks whether
the administrative group is a shortcut, and compares the AUC across insurance
types. Its ``generate_synthetic_ehr`` is not shown; :func:`make_ehr` is a
generator with a stated ground truth:

* the outcome depends on a latent severity only, which the clinical features
  measure with noise, so the clinical group is the genuine one;
* administrative features are independent of severity and outcome unless a
  shortcut is planted (``shortcut > 0``): then for a share of patients the
  admission type encodes the outcome;
* clinical measurements of uninsured patients are noisier
  (``insurance_noise``), a planted subgroup gap in AUC by insurance type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from featurelens._validation import RandomState, check_float, check_int, check_random_state
from featurelens.data import FeatureSpec

CLINICAL = (
    "heart_rate", "blood_pressure", "temperature", "respiratory_rate",
    "oxygen_saturation", "lab_values", "medications",
)
ADMINISTRATIVE = ("admission_type", "insurance_type", "facility_type", "admission_day", "length_of_stay")
INSURANCE = ("private", "public", "uninsured")
ADMISSION = ("elective", "urgent", "emergency")
#: (baseline, change per unit of severity, noise standard deviation) of each continuous clinical feature
_VITALS = {
    "heart_rate": (80.0, 10.0, 8.0),  # beats per minute
    "blood_pressure": (120.0, -8.0, 10.0),  # systolic, mmHg
    "temperature": (37.0, 0.4, 0.3),  # degrees Celsius
    "respiratory_rate": (16.0, 3.0, 2.0),  # breaths per minute
    "oxygen_saturation": (97.0, -1.5, 1.0),  # percent, clipped at 100
    "lab_values": (1.5, 0.6, 0.4),  # a lactate-like marker, mmol/L
}
_INSURANCE_P = (0.5, 0.35, 0.15)
_ADMISSION_P = (0.5, 0.3, 0.2)


@dataclass(frozen=True, eq=False)
class EHRData:
    """Visits of synthetic patients and their outcome.

    Attributes
    ----------
    visits : pandas.DataFrame
        Long format, one row per visit (``n_patients * n_visits`` rows):
        ``patient_id``, ``visit`` (0 = oldest), the 12 features and
        ``outcome`` (the patient's outcome, repeated on each visit row).
    X : numpy.ndarray
        ``(n_patients, n_visits, 12)`` float32, the features of each visit
        in the order of :attr:`feature_names`.
    y : numpy.ndarray
        ``(n_patients,)`` float32 in {0, 1}: adverse outcome after the last visit.
    insurance : numpy.ndarray
        ``(n_patients,)`` int64 codes into :data:`INSURANCE` (subgroups).
    feature_names : list of str
    groups : dict of str to list of str
        ``clinical`` (7 features) and ``administrative`` (5).
    ground_truth : dict
        ``shortcut_group``, ``shortcut``, ``insurance_noise``, ``outcome_rule``.
    """

    visits: pd.DataFrame
    X: np.ndarray
    y: np.ndarray
    insurance: np.ndarray
    feature_names: list[str]
    groups: dict[str, list[str]]
    ground_truth: dict[str, Any] = field(repr=False)

    def __len__(self) -> int:
        return self.X.shape[0]

    def spec(self) -> FeatureSpec:
        """``FeatureSpec(feature_names, groups)``."""
        return FeatureSpec(self.feature_names, self.groups)

    def last_visit(self) -> pd.DataFrame:
        """One row per patient: the features of the last visit and ``outcome`` (a tabular view)."""
        frame = pd.DataFrame(self.X[:, -1, :], columns=self.feature_names)
        frame["outcome"] = self.y
        return frame


def make_ehr(
    n_patients: int = 2000,
    *,
    n_visits: int = 10,
    shortcut: float = 0.0,
    insurance_noise: float = 3.0,
    prevalence_shift: float = -1.0,
    random_state: RandomState = 0,
) -> EHRData:
    """Synthetic EHR visits with a clinical outcome and an optional administrative shortcut.

    Per patient ``i``: a baseline severity ``a_i ~ N(0, 1)`` and a trend
    ``b_i ~ N(0, 1)``; at visit ``t = 0 .. T-1`` the severity is
    ``s_it = a_i + b_i * t / T``. The outcome is
    ``y_i = 1[prevalence_shift + 2 * s_{i,T-1} + e_i > 0]`` with logistic
    noise ``e_i``, so it depends on the latest severity only (about 39 % of
    outcomes are 1 with the defaults).

    Clinical features at visit ``t`` measure ``s_it`` with Gaussian noise
    (baseline + slope * s + noise, see ``_VITALS``; oxygen saturation clipped
    at 100); ``medications`` is Poisson with mean ``exp(0.5 + 0.3 s_it)``.
    The noise standard deviation is multiplied by ``insurance_noise`` for
    uninsured patients, so the outcome is harder to predict for them.

    Administrative features: ``insurance_type`` (0 private, 1 public, 2
    uninsured; probabilities 0.5, 0.35, 0.15) and ``facility_type`` (0
    community, 1 teaching; 1/2 each) per patient; ``admission_type`` (0
    elective, 1 urgent, 2 emergency; 0.5, 0.3, 0.2), ``admission_day``
    (0 = Monday .. 6) and ``length_of_stay`` (days, ``1 + Poisson(3)``) per
    visit, all independent of severity and outcome. With probability
    ``shortcut`` a patient is a *shortcut patient*: every admission type is
    ``2 * y_i`` (emergency when the outcome is adverse, elective otherwise),
    so the administrative group predicts the outcome without being its cause.

    Parameters
    ----------
    n_patients, n_visits : int
        ``>= 1`` each.
    shortcut : float
        Share of shortcut patients in ``[0, 1]``.
    insurance_noise : float
        Noise multiplier for uninsured patients, ``>= 0`` (1 = no gap).
    prevalence_shift : float
        Intercept of the outcome's logit.
    random_state : int, numpy.random.Generator or None

    Returns
    -------
    EHRData
    """
    n = check_int(n_patients, name="n_patients", minimum=1)
    t_visits = check_int(n_visits, name="n_visits", minimum=1)
    s = check_float(shortcut, name="shortcut", low=0.0, high=1.0)
    noise_mult = check_float(insurance_noise, name="insurance_noise", low=0.0)
    shift = check_float(prevalence_shift, name="prevalence_shift")
    rng = check_random_state(random_state)

    base = rng.standard_normal(n)
    trend = rng.standard_normal(n)
    severity = base[:, None] + trend[:, None] * (np.arange(t_visits)[None, :] / t_visits)  # (n, T)
    logistic = rng.logistic(size=n)
    y = (shift + 2.0 * severity[:, -1] + logistic > 0).astype(np.float32)
    insurance = rng.choice(3, size=n, p=_INSURANCE_P).astype(np.int64)
    scale = np.where(insurance == 2, noise_mult, 1.0)[:, None]  # (n, 1)

    cols: dict[str, np.ndarray] = {}
    for name, (b0, slope, sd) in _VITALS.items():
        cols[name] = b0 + slope * severity + sd * scale * rng.standard_normal((n, t_visits))
    cols["oxygen_saturation"] = np.minimum(cols["oxygen_saturation"], 100.0)
    cols["medications"] = rng.poisson(np.exp(0.5 + 0.3 * severity)).astype(np.float64)

    shortcut_patient = rng.random(n) < s
    admission = rng.choice(3, size=(n, t_visits), p=_ADMISSION_P).astype(np.float64)
    admission[shortcut_patient] = 2.0 * y[shortcut_patient, None]
    cols["admission_type"] = admission
    cols["insurance_type"] = np.repeat(insurance[:, None], t_visits, axis=1).astype(np.float64)
    facility = rng.integers(0, 2, size=n)
    cols["facility_type"] = np.repeat(facility[:, None], t_visits, axis=1).astype(np.float64)
    cols["admission_day"] = rng.integers(0, 7, size=(n, t_visits)).astype(np.float64)
    cols["length_of_stay"] = 1.0 + rng.poisson(3.0, size=(n, t_visits))

    names = list(CLINICAL + ADMINISTRATIVE)
    X = np.stack([cols[c] for c in names], axis=-1).astype(np.float32)  # (n, T, 12)
    visits = pd.DataFrame(X.reshape(n * t_visits, len(names)), columns=names)
    visits.insert(0, "visit", np.tile(np.arange(t_visits), n))
    visits.insert(0, "patient_id", np.repeat(np.arange(n), t_visits))
    visits["outcome"] = np.repeat(y, t_visits)
    truth = {
        "shortcut_group": "administrative" if s > 0 else None,
        "shortcut_feature": "admission_type" if s > 0 else None,
        "shortcut": s,
        "insurance_noise": noise_mult,
        "outcome_rule": (
            f"y = 1[{shift} + 2 * severity at the last visit + logistic noise > 0]; clinical features "
            "measure severity with noise; administrative features are independent of it"
            + (f"; for a share {s} of patients admission_type = 2 * y" if s > 0 else "")
        ),
    }
    return EHRData(
        visits=visits,
        X=X,
        y=y,
        insurance=insurance,
        feature_names=names,
        groups={"clinical": list(CLINICAL), "administrative": list(ADMINISTRATIVE)},
        ground_truth=truth,
    )
