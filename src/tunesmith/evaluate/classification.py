"""Classification scores from generated answers: read the label, then accuracy, macro-F1, per-class P/R, confusion.

A chat model answers "The sentiment is positive." rather than "positive", so the label is the declared
class that appears earliest in the answer as whole tokens (normalised like `contains_answer`); an
answer naming no class is `(none)`, which is always wrong and counts in the confusion matrix.
"""
from __future__ import annotations

from tunesmith.evaluate.matching import normalize_answer

NO_LABEL = "(none)"


def read_label(prediction: str, labels: list[str]) -> str:
    words = normalize_answer(prediction).split()
    best, best_position = NO_LABEL, len(words) + 1
    # Longer labels first, so "very positive" wins over "positive" at the same position.
    for label in sorted(labels, key=lambda name: -len(normalize_answer(name).split())):
        target = normalize_answer(label).split()
        for position in range(len(words) - len(target) + 1):
            if words[position : position + len(target)] == target:
                if position < best_position:
                    best, best_position = label, position
                break
    return best


def classification_metrics(truths: list[str], predictions: list[str], labels: list[str]) -> dict:
    """Accuracy, macro-F1 over `labels`, per-class precision/recall/F1/support and the confusion matrix.

    `confusion[i][j]` counts items of true class labels[i] predicted as columns[j]; columns are the
    labels plus `(none)`. A class never predicted has precision 0 (sklearn's zero_division=0).
    """
    columns = [*labels, NO_LABEL]
    confusion = [[0] * len(columns) for _ in labels]
    for truth, predicted in zip(truths, predictions):
        confusion[labels.index(truth)][columns.index(predicted)] += 1
    per_class = {}
    for i, label in enumerate(labels):
        true_positive = confusion[i][i]
        predicted = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    total = len(truths)
    return {
        "accuracy": sum(confusion[i][i] for i in range(len(labels))) / total if total else 0.0,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(labels),
        "per_class": per_class,
        "confusion": {"labels": labels, "columns": columns, "matrix": confusion},
    }
