"""The robust-ticket study end to end at a tiny size: sparsity, no collapse, risk, reload, report, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from featurelens import load_model
from featurelens.cli import main
from featurelens.examples import tickets
from featurelens.examples.hedging import FEATURE_NAMES
from featurelens.examples.tickets import FACTORY, TicketsConfig, run_tickets_study
from featurelens.report import comparison_text

TINY = TicketsConfig(n_paths=128, dense_epochs=30, rewind_epoch=3, rounds=2, round_epochs=5, pgd_steps=2,
                     n_eval=500, n_rows=200)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("tickets") / "report"
    return run_tickets_study(out, config=TINY, random_state=0)


def test_tickets_reach_target_sparsity_without_collapse(study):
    table = study.sparsity
    for name in ("ticket", "robust"):
        rows = table[table["model"] == name].set_index("layer")
        hidden = rows.drop(index="total")
        assert list(hidden.index) == ["layer1.weight", "layer2.weight", "layer3.weight"]  # output layer dense
        assert ((hidden["sparsity"] - 0.8).abs() <= 0.01).all()
        assert (hidden["n_pruned"] < hidden["n_weights"]).all()  # no layer fully pruned
        assert "layer4.weight" not in rows.index
    assert list(table[table["model"] == "dense"]["layer"]) == ["total"]
    checks = study.to_dict()["collapse_check"]
    for name in ("dense", "ticket", "robust"):
        assert checks[name]["output_std_on_rows"] > 1e-3  # the hedge varies across inputs
    assert checks["ticket"]["smallest_kept_fraction"] == pytest.approx(51 / 256, abs=1e-9)


def test_risk_tables(study):
    risk, attacked = study.risk, study.attacked
    assert list(risk.index) == ["dense", "ticket", "robust", "BS delta", "unhedged"]
    for name in ("dense", "ticket", "robust", "BS delta"):
        assert risk.loc[name, "ES_0.1"] < risk.loc["unhedged", "ES_0.1"]
    assert list(attacked.index) == ["dense", "ticket", "robust"]
    assert (attacked["clean"] == risk.loc[["dense", "ticket", "robust"], "ES_0.1"]).all()
    assert (attacked["FGSM"] > attacked["clean"]).all() and (attacked["PGD"] > attacked["clean"]).all()
    assert (attacked["FGSM − clean"] == attacked["FGSM"] - attacked["clean"]).all()


def test_checkpoints_reload_bit_identically(study):
    assert study.reload == {"dense": True, "ticket": True, "robust": True}
    for name in ("dense", "ticket", "robust"):  # the report ships the files that were checked
        assert (study.out / "checkpoints" / f"{name}.pt").read_bytes() == study.checkpoints[name]
    x = torch.randn(64, len(FEATURE_NAMES), generator=torch.Generator().manual_seed(0))
    for name, model in study.models.items():
        loaded = load_model(study.out / "checkpoints" / f"{name}.pt", factory=FACTORY)
        with torch.no_grad():
            assert torch.equal(model(x), loaded(x))
        assert hasattr(loaded.layer1, "weight_mask") == (name != "dense")


def test_report_files_and_comparison(study):
    out = study.out
    results = json.loads((out / "results.json").read_text())
    assert {k: v for k, v in results.items() if k not in ("title", "featurelens_version", "comparison_text",
                                                          "figures")} == study.to_dict()
    assert results["comparison_text"] == comparison_text(study.comparison)
    assert results["figures"] == ["risk.png", "training.png", "importance.png", "difference.png", "weights.png",
                                  "sparsity.png"]
    assert results["features"] == list(FEATURE_NAMES)
    assert results["comparison"]["features"] == list(FEATURE_NAMES)
    assert results["comparison"]["reference"] == "ticket"
    assert {r["strategy"] for r in results["risk"]} == {"dense", "ticket", "robust", "BS delta", "unhedged"}
    for name in ("importance", "difference", "weights", "sparsity"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not (out / f"{name}.pdf").exists()  # PDFs only on request
    for name in ("risk", "training"):
        assert (out / f"{name}.png").is_file()
    html = (out / "index.html").read_text()
    assert "Hedging risk" in html and "cum_PnL" in html and "difference.png" in html
    assert "ES_0.1" in study._repr_html_() and study.to_frame().equals(study.attacked)
    shares = study.comparison.shares("weights")
    assert list(shares.index) == list(FEATURE_NAMES)
    assert shares.sum().tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_cli_quick_runs_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tickets, "QUICK", TicketsConfig(n_paths=64, dense_epochs=6, rewind_epoch=1, rounds=1,
                                                        round_epochs=2, pgd_steps=1, n_eval=200, n_rows=100))
    out = tmp_path / "tk"
    assert main(["example", "tickets", "--quick", "--out", str(out), "--seed", "1", "--format", "png,pdf"]) == 0
    text = capsys.readouterr().out
    assert ("hedging risk" in text and "BS delta" in text
            and "bit-identically: dense yes, ticket yes, robust yes" in text)
    assert (out / "index.html").is_file() and len(list((out / "checkpoints").glob("*.pt"))) == 3
    for name in ("importance", "difference", "weights", "sparsity"):
        assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
    # an existing directory is refused before any work, nothing is touched
    before = sorted(p.name for p in out.iterdir())
    assert main(["example", "tickets", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["example", "tickets", "--quick", "--out", str(tmp_path / "x"), "--format", "gif"]) == 2
    assert "'gif' is not a figure format" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="config must be a TicketsConfig"):
        run_tickets_study(tmp_path / "a", config={"n_paths": 10})
    with pytest.raises(ValueError, match="rewind_epoch"):
        TicketsConfig(dense_epochs=5, rewind_epoch=6)
    with pytest.raises(ValueError, match="target_sparsity"):
        TicketsConfig(target_sparsity=1.0)
    with pytest.raises(ValueError, match="random_state"):
        run_tickets_study(tmp_path / "b", config=TINY, random_state=-1)
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        run_tickets_study(tmp_path / "c", config=TINY)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
