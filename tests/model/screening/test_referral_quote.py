from model.screening.referral import CAMERAS, INDEPENDENT_VALIDATION, quoted_validation


def test_the_answer_quotes_the_independent_figure_beside_the_cross_validated_one():
    stored = {"roc_auc": 0.9586, "data": "IDRiD disease grading, training set"}
    quoted = quoted_validation(stored, "redseg-full", "2")
    assert quoted["roc_auc"] == 0.9586 and quoted["cameras"] == CAMERAS and "one camera" in CAMERAS
    assert quoted["independent"]["roc_auc"] == 0.910 and quoted["independent"]["sensitivity"] == 0.738
    assert quoted_validation(stored, "redseg-fast", "3")["independent"] is None
    assert ("redseg-full", "2") in INDEPENDENT_VALIDATION
