"""What the model agrees to look at: the size check first, then the fundus check; by the CLI too."""

import cv2
import numpy as np
import pytest

from model.checkpoint import FAST_CHECKPOINT, load_checkpoint
from model.cli import main
from model.fov import PhotographTooSmall
from model.formats.images import read_image
from model.input_check import NotAFundusPhotograph, admit_photograph, refusal_reason
from tests.model.conftest import SAMPLE_IMAGE


@pytest.fixture(scope="module")
def config():
    return load_checkpoint(FAST_CHECKPOINT).config


def test_a_fundus_photograph_is_admitted_with_its_mapping(config):
    mapping = admit_photograph(read_image(SAMPLE_IMAGE), config)
    assert mapping.disc.found and mapping.size == (976, 1200)


def test_an_image_that_is_no_fundus_photograph_is_refused_with_the_reason(config):
    orange = np.full((1200, 1600, 3), (230, 120, 30), np.uint8)
    with pytest.raises(NotAFundusPhotograph, match="^not a colour fundus photograph: ") as refused:
        admit_photograph(orange, config)
    assert refusal_reason(refused.value) == "not_fundus"
    assert admit_photograph(orange, config, fundus_check=False).size  # the check can be switched off


def test_too_small_is_said_before_not_fundus(config):
    with pytest.raises(PhotographTooSmall) as refused:
        admit_photograph(np.full((64, 64, 3), (230, 120, 30), np.uint8), config)
    assert refusal_reason(refused.value) == "too_small"


def test_redseg_segment_names_a_non_fundus_image_and_goes_on(tmp_path, capsys):
    orange = tmp_path / "orange.png"
    cv2.imwrite(str(orange), np.full((1200, 1600, 3), (30, 120, 230), np.uint8))
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), cv2.resize(cv2.imread(str(SAMPLE_IMAGE)), (1072, 712), interpolation=cv2.INTER_AREA))
    out = tmp_path / "out"
    assert main([str(orange), str(photo), "--out", str(out), "--checkpoint", str(FAST_CHECKPOINT), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"redseg-segment: error: {orange}: not a colour fundus photograph: " in err
    assert (out / "photo_overlay.png").exists() and not (out / "orange_overlay.png").exists()
