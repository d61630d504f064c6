"""Healthcare example: clinical vs administrative features of an outcome model.

The healthcare study of the superposition and spurious-correlation study.

:func:`run_healthcare_example` (CLI: ``featurelens example healthcare [--quick]``)
generates visit sequences of synthetic patients (:func:`featurelens.datasets.make_ehr`)
at *training hospitals* whose admission coding leaks the outcome (for a share
``shortcut`` of patients the admission type is "emergency" exactly when the
outcome is adverse) and at a *new hospital* where it does not (the shifted
test set). A window MLP over all visits is trained at the training
hospitals; the detector, robustness curves, group interactions, the AUC by
insurance type (uninsured patients are measured with more noise, a planted
gap) and the mitigations are reported. Insurance type, facility type and
admission day are immutable under attack.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from featurelens._validation import check_float, check_int
from featurelens.data import split_indices
from featurelens.datasets import INSURANCE, make_ehr
from featurelens.examples._reliance_study import Split, StudyResult, run_reliance_study, standardize

STRATEGIES = ("randomize", "adversarial", "dfr")
IMMUTABLE = ("insurance_type", "facility_type", "admission_day")


def healthcare_splits(
    *, n_patients: int, n_shifted: int, n_visits: int, shortcut: float, random_state: int = 0
) -> dict[str, Any]:
    """Build the splits (60/20/20 of the training hospitals, and the new hospital), spec, environments, table."""
    n = check_int(n_patients, name="n_patients", minimum=50)
    n_sh = check_int(n_shifted, name="n_shifted", minimum=10)
    s = check_float(shortcut, name="shortcut", low=0.0, high=1.0)
    home = make_ehr(n, n_visits=n_visits, shortcut=s, random_state=random_state)
    new = make_ehr(n_sh, n_visits=n_visits, shortcut=0.0, random_state=random_state + 1)
    tr, va, te = split_indices(n, fractions=(0.6, 0.2, 0.2), random_state=random_state)
    X_tr, X_va, X_te, X_sh = standardize(home.X[tr], home.X[va], home.X[te], new.X)
    splits = {"train": Split(X_tr, home.y[tr]), "val": Split(X_va, home.y[va]),
              "test": Split(X_te, home.y[te]), "shifted": Split(X_sh, new.y)}
    names = home.feature_names
    visits = pd.DataFrame(np.concatenate([X_te, X_sh]).reshape(-1, len(names)), columns=names)
    n_rows = len(te) + n_sh
    visits.insert(0, "patient_id", np.repeat(np.arange(n_rows), n_visits))
    visits["hospital"] = np.repeat(np.r_[np.zeros(len(te)), np.ones(n_sh)], n_visits)
    visits["outcome"] = np.repeat(np.r_[home.y[te], new.y], n_visits)
    return {
        "splits": splits,
        "spec": home.spec(),
        "environments": np.r_[np.full(len(te), "training hospitals"), np.full(n_sh, "new hospital")],
        "subgroups": np.asarray(INSURANCE)[np.r_[home.insurance[te], new.insurance]],
        "table": visits,
        "ground_truth": {
            "spurious_group": "administrative",
            "shortcut feature": "admission_type",
            "shortcut share (training hospitals)": s,
            "shortcut share (new hospital)": 0.0,
            "uninsured noise multiplier": home.ground_truth["insurance_noise"],
            "outcome rule": home.ground_truth["outcome_rule"],
        },
    }


def run_healthcare_example(
    out: str | os.PathLike,
    *,
    n_patients: int = 3000,
    n_shifted: int = 1000,
    n_visits: int = 10,
    shortcut: float = 0.8,
    epochs: int = 100,
    mitigation_epochs: int = 30,
    quick: bool = False,
    random_state: int = 0,
    force: bool = False,
    progress: bool = False,
) -> StudyResult:
    """Train, detect, attack, mitigate and report on synthetic EHR data (module docstring).

    Parameters
    ----------
    out : path
        Output directory: ``report/``, ``model.pt2`` (``torch.export``), ``data.csv``
        (one row per visit of the test and new-hospital patients, standardized,
        with ``patient_id``, ``hospital`` and ``outcome``) and ``groups.json``.
    n_patients, n_shifted : int
        Patients at the training hospitals (split 60/20/20) and at the new hospital.
    n_visits : int
        Visits per patient.
    shortcut : float
        Share of training-hospital patients whose admission type encodes the outcome.
    epochs, mitigation_epochs : int
    quick : bool
        A smaller run for tests (800 + 300 patients, 15 / 8 epochs).
    random_state : int

    Returns
    -------
    StudyResult
    """
    if quick:
        n_patients, n_shifted = min(n_patients, 800), min(n_shifted, 300)
        epochs, mitigation_epochs = min(epochs, 15), min(mitigation_epochs, 8)
    data = healthcare_splits(n_patients=n_patients, n_shifted=n_shifted, n_visits=n_visits,
                             shortcut=shortcut, random_state=random_state)
    return run_reliance_study(
        out,
        title="featurelens example: does an outcome model rely on administrative coding?",
        splits=data["splits"], spec=data["spec"], suspect="administrative",
        environments=data["environments"], subgroups=data["subgroups"], subgroup_name="insurance type",
        strategies=STRATEGIES, immutable=list(IMMUTABLE), table=data["table"], epochs=epochs,
        mitigation_epochs=mitigation_epochs,
        summary={"data": f"{n_patients} patients at the training hospitals, {n_shifted} at a new hospital, "
                         f"{n_visits} visits each (synthetic EHR)",
                 "features": "7 clinical | 5 administrative, per visit",
                 "label": "adverse outcome after the last visit"},
        ground_truth=data["ground_truth"],
        notes=["Detection runs on the test patients of the training hospitals and the new hospital's "
               "patients (environments: hospital).",
               "Attacks leave insurance type, facility type and admission day unchanged (immutable).",
               "Re-run the detector: featurelens reliance --model model.pt2 --data data.csv --groups "
               "groups.json --label outcome --sequence-id patient_id --environments hospital --out OUT"],
        random_state=random_state, force=force, progress=progress,
    )
