"""Lesion-level FROC on constructed images whose answer is worked out by hand."""

import numpy as np
import pytest

from model.screening.masks import PROBABILITY_LEVELS
from training.evaluation.froc import FROC_RATES, SWEEP, FROCAccumulator, region_counts, region_peaks, sweep_thresholds


def two_lesions_two_false():
    """Ground truth: a 2x2 region A (peak 0.9) and a one-pixel region B (0.4); two false blobs, 0.7 and 0.3."""
    truth = np.zeros((20, 20), bool)
    truth[2:4, 2:4] = True
    truth[10, 10] = True
    probability = np.zeros((20, 20), np.float32)
    probability[2:4, 2:4] = 0.6
    probability[2, 2] = 0.9
    probability[10, 10] = 0.4
    probability[5:7, 15:17] = 0.7
    probability[18, 2] = 0.3
    return probability, truth


def test_hand_worked_curve_and_the_seven_rates():
    probability, truth = two_lesions_two_false()
    froc = FROCAccumulator(thresholds=[0.2, 0.5, 0.8])
    froc.update(probability, truth)
    false_rate, sensitivity = froc.curve()
    # 0.2: A, B, both blobs served -> 2 of 2 found, 2 false; 0.5: A and the 0.7 blob; 0.8: A's peak alone.
    assert false_rate.tolist() == [2, 1, 0]
    assert sensitivity.tolist() == [1, 0.5, 0.5]
    # At 1/8 .. 1 false per image the best is threshold 0.8 (0 false, 0.5); at 2, 4, 8 it is 0.2.
    assert froc.sensitivity_at().tolist() == [0.5, 0.5, 0.5, 0.5, 1, 1, 1]
    assert froc.summary()["froc"]["mean_sensitivity"] == pytest.approx((4 * 0.5 + 3 * 1) / 7)


def test_false_regions_are_averaged_over_images_and_regions_pooled():
    probability, truth = two_lesions_two_false()
    froc = FROCAccumulator(thresholds=[0.2, 0.5, 0.8])
    froc.update(probability, truth)
    froc.update(np.zeros_like(probability), np.zeros_like(truth))  # a clean photograph: no regions, no false ones
    false_rate, sensitivity = froc.curve()
    assert froc.num_images == 2 and froc.num_regions == 2
    assert false_rate.tolist() == [1, 0.5, 0] and sensitivity.tolist() == [1, 0.5, 0.5]
    # 1/2 false per image is now reached at 0.5 (sensitivity 0.5), 1 at 0.2 (sensitivity 1).
    assert froc.sensitivity_at([0.25, 0.5, 1]).tolist() == [0.5, 0.5, 1]


def test_a_rate_below_every_threshold_scores_zero():
    probability, truth = two_lesions_two_false()
    froc = FROCAccumulator(thresholds=[0.2])
    froc.update(probability, truth)
    assert froc.sensitivity_at([1, 2]).tolist() == [0, 1]


def test_a_served_region_touching_the_ground_truth_is_not_false():
    probability, truth = two_lesions_two_false()
    probability[4:6, 2:4] = 0.55  # grows A's served region downwards at 0.5 and below
    froc = FROCAccumulator(thresholds=[0.2, 0.5, 0.8])
    froc.update(probability, truth)
    assert froc.curve()[0].tolist() == [2, 1, 0]


def test_regions_are_eight_connected():
    truth = np.zeros((10, 10), bool)
    truth[2, 2] = truth[3, 3] = True  # diagonal neighbours: one region
    truth[6, 6] = True
    probability = np.zeros((10, 10), np.float32)
    probability[6, 8] = probability[7, 9] = 0.5  # one diagonal false region
    assert len(region_peaks(np.zeros((10, 10), np.uint16), truth)) == 2
    served, false = region_counts((probability * PROBABILITY_LEVELS).astype(np.uint16), np.array([0.3]), truth)
    assert served.tolist() == [1] and false.tolist() == [1]


def test_a_region_on_the_other_lesions_ground_truth_is_neither_found_nor_false():
    probability, truth = two_lesions_two_false()
    other = np.zeros_like(truth)
    other[5, 15] = True  # the other red lesion is marked under the 0.7 blob
    with_other = FROCAccumulator(thresholds=[0.2, 0.5, 0.8])
    image = with_other.update(probability, truth, other)
    alone = FROCAccumulator(thresholds=[0.2, 0.5, 0.8])
    alone.update(probability, truth)
    assert with_other.curve()[0].tolist() == [1, 0, 0] and alone.curve()[0].tolist() == [2, 1, 0]
    assert with_other.curve()[1].tolist() == alone.curve()[1].tolist()
    assert image.ground_truth_regions == 2


def test_the_operating_threshold_joins_the_sweep_and_gives_the_images_figures():
    probability, truth = two_lesions_two_false()
    froc = FROCAccumulator(operating=0.355)
    assert 0.355 in froc.thresholds.tolist() and len(froc.thresholds) == len(SWEEP) + 1
    image = froc.update(probability, truth)
    # At 0.355: A (0.9, with its 0.6 pixels), B (0.4) and the 0.7 blob are served; the 0.3 blob is not.
    assert (image.ground_truth_regions, image.found_regions, image.false_regions, image.served_regions) == (2, 2, 1, 3)
    assert image.max_probability == pytest.approx(0.9, abs=1 / PROBABILITY_LEVELS)
    summary = froc.summary()
    assert summary["at_threshold"] == {"threshold": 0.355, "sensitivity": 1.0, "false_regions_per_image": 1.0,
                                       "false_regions": 1}
    assert summary["lowest_threshold"]["threshold"] == 0.01 and summary["lowest_threshold"]["false_regions"] == 2
    assert summary["froc"]["false_regions_per_image"] == list(FROC_RATES)
    assert len(summary["curve"]["thresholds"]) == len(summary["curve"]["sensitivity"]) == len(froc.thresholds)


def test_thresholds_compare_as_the_served_16_bit_mask_does():
    truth = np.zeros((4, 4), bool)
    truth[1, 1] = True
    probability = np.zeros((4, 4), np.float32)
    probability[1, 1] = 0.5  # saved as level 32768, which reaches 0.5
    froc = FROCAccumulator(thresholds=[0.5, 0.50001])
    froc.update(probability, truth)
    assert froc.curve()[1].tolist() == [1, 0]


def test_without_ground_truth_the_sensitivity_is_undefined():
    froc = FROCAccumulator(thresholds=[0.5])
    probability = np.zeros((8, 8), np.float32)
    probability[3, 3] = 0.9
    froc.update(probability, np.zeros((8, 8), bool))
    assert froc.curve()[0].tolist() == [1]
    assert np.isnan(froc.summary()["froc"]["mean_sensitivity"])


def test_sweep_is_ascending_and_unique():
    thresholds = sweep_thresholds(0.23)
    assert np.all(np.diff(thresholds) > 0) and thresholds[0] == 0.01 and thresholds[-1] == 1.0
    assert len(sweep_thresholds(0.5)) == len(SWEEP)
