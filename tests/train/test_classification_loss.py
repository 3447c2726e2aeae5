"""Classification losses, class weights and threshold calibration: the math, against torch's own and by hand."""
import pytest
import torch
import torch.nn.functional as F

from tunesmith.train.calibration import calibrate_thresholds, label_threshold
from tunesmith.train.classification_loss import class_weights, classification_loss_sum, correct_count


def test_multi_label_loss_is_torch_bce_mean_per_example_summed():
    torch.manual_seed(0)
    logits, targets = torch.randn(5, 3), (torch.rand(5, 3) > 0.5).float()
    expected = F.binary_cross_entropy_with_logits(logits, targets) * 5  # torch's mean over B×L, times B
    assert classification_loss_sum(logits, targets, multi_label=True) == pytest.approx(float(expected), rel=1e-6)


def test_pos_weight_multiplies_only_the_positive_terms():
    logits, targets = torch.tensor([[0.3, -1.0]]), torch.tensor([[1.0, 0.0]])
    plain = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weighted = classification_loss_sum(logits, targets, True, torch.tensor([4.0, 4.0]))
    assert float(weighted) == pytest.approx(float((4 * plain[0, 0] + plain[0, 1]) / 2), rel=1e-6)


def test_single_label_loss_is_weighted_cross_entropy_summed_over_examples():
    torch.manual_seed(1)
    logits, classes = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 1])
    weights = torch.tensor([1.0, 0.5, 2.0, 3.0])
    expected = F.cross_entropy(logits, classes, weight=weights, reduction="sum")
    loss = classification_loss_sum(logits, F.one_hot(classes, 4).float(), False, weights)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_correct_count_is_exact_match():
    logits = torch.tensor([[2.0, -1.0], [2.0, 1.0], [-3.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    assert float(correct_count(logits, targets, multi_label=True)) == 2
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # argmax of logits: 0, 0, 1
    assert float(correct_count(logits, classes, multi_label=False)) == 2


def test_balanced_weights_are_negatives_over_positives_capped():
    targets = [[1, 0, 0]] + [[0, 1, 0]] * 3 + [[0, 0, 0]] * 96  # 1, 3 and 0 positives in 100 rows
    weights = class_weights(targets, multi_label=True, mode="balanced", max_weight=50.0)
    assert weights.tolist() == pytest.approx([50.0, 97 / 3, 1.0])  # 99 capped; no positive: 1
    assert class_weights(targets, True, "none", 50.0) is None
    single = class_weights([[1, 0]] * 3 + [[0, 1]], multi_label=False, mode="balanced", max_weight=10.0)
    assert single.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])


def test_label_threshold_allows_at_most_the_target_share_of_negatives():
    negatives = torch.linspace(0, 1, 100)  # 0.00, 0.0101, ..., 1.0
    threshold = label_threshold(negatives, 0.05)
    assert int((negatives >= threshold).sum()) == 5
    assert threshold > float(negatives[94]) and threshold <= float(negatives[95])  # the lowest such threshold
    tied = torch.tensor([0.9] * 10 + [0.1] * 90)
    assert int((tied >= label_threshold(tied, 0.05)).sum()) == 0  # a tie at the cut flags none of them
    assert label_threshold(torch.tensor([]), 0.05) == 0.5


def test_calibration_bounds_each_label_and_the_any_label_rate_on_unlabelled_rows():
    torch.manual_seed(0)
    n = 400
    targets = torch.zeros(n, 3)
    targets[:40, 0] = 1
    targets[30:80, 1] = 1  # rows 30-39 carry both labels
    targets[60:70, 2] = 1
    scores = (0.6 * targets + 0.5 * torch.rand(n, 3)).clamp(0, 1)  # positives score higher, overlapping
    thresholds = calibrate_thresholds(scores, targets, ["a", "b", "c"], target_fpr=0.05)
    fired = scores >= torch.tensor([thresholds[label] for label in "abc"])
    for j in range(3):
        negatives = targets[:, j] == 0
        assert fired[negatives, j].float().mean() <= 0.05
    unlabelled = targets.sum(dim=-1) == 0
    assert fired[unlabelled].any(dim=-1).float().mean() <= 0.05
    per_label_only = [label_threshold(scores[targets[:, j] == 0, j], 0.05) for j in range(3)]
    assert any(thresholds[label] > limit for label, limit in zip("abc", per_label_only))  # the any-label rule bit
    assert fired[~unlabelled].any(dim=-1).float().mean() > 0.5  # and recall survives


def test_a_label_no_validation_row_carries_is_not_calibrated_below_half():
    scores = torch.tensor([[0.9, 0.02], [0.1, 0.01], [0.2, 0.03], [0.05, 0.6]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    thresholds = calibrate_thresholds(scores, targets, ["seen", "unseen"], target_fpr=0.4, multi_label=False)
    assert thresholds["seen"] == pytest.approx(0.1, abs=1e-6)  # one of 3 negatives may fire: above the 2nd highest
    assert thresholds["unseen"] == 0.5  # the FPR rule alone would allow just above 0.03
