"""QA evaluation: each item's greedy answer scored against its answer, aliases and relations."""
from tunesmith.evaluate.generation import evaluate_qa
from tunesmith.models.generate import generate_answers


def test_evaluate_qa_scores_items_aliases_and_relations(talkative_model, tokenizer):
    model = talkative_model
    items = [
        {"id": "a", "question": "Gold?", "answer": "Au", "relation": "symbol"},
        {"id": "b", "question": "Hydrogen has atomic number", "answer": "1", "relation": "number"},
    ]
    predictions = generate_answers(model, tokenizer, [[{"role": "user", "content": i["question"]}] for i in items],
                                   max_new_tokens=6, progress=False)
    items[0]["aliases"] = [predictions[0]]  # right through an alias equal to what the model says
    result = evaluate_qa(model, tokenizer, items, method="exact", max_new_tokens=6, progress=False)
    assert [row["prediction"] for row in result.rows] == predictions
    assert [row["correct"] for row in result.rows] == [True, False]
    assert result.by_relation == {"number": 0.0, "symbol": 1.0}
    assert result.accuracy == 0.5
    assert result.seconds > 0 and result.items_per_second > 0
    assert result.summary()["n"] == 2
