import json
import shutil

from tests.model.conftest import SAMPLE_IMAGE
from training.evaluation.gradability import DEGRADATIONS, main


def test_the_rule_is_reported_on_real_and_degraded_copies(tmp_path):
    folder = tmp_path / "idrid" / "A. Segmentation" / "1. Original Images" / "a. Training Set"
    folder.mkdir(parents=True)
    shutil.copy(SAMPLE_IMAGE, folder / "IDRiD_05.jpg")
    out = tmp_path / "out"
    assert main(["--idrid", str(tmp_path / "idrid"), "--grading", str(tmp_path / "none"), "--diaretdb1",
                 str(tmp_path / "none"), "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["variants"]["real"] == {"expected": "gradable", "photographs": 1, "ungradable": 0}
    for name in ("blur 16 px", "exposure x0.1", "exposure x4"):
        assert summary["variants"][name]["ungradable"] == 1, name
    judged = sum(v for answers in summary["confusion"].values() for v in answers.values())
    assert judged == 1 + sum(expected != "borderline" for expected, _ in DEGRADATIONS.values())
    assert summary["real_photographs_answered_ungradable"] == []
    assert "| expected ungradable | 0 |" in (out / "report.md").read_text()
