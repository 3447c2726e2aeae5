import pytest
import torch

from tunesmith.evaluate.generation import evaluate_qa, generate_answers, stop_token_ids

PROMPTS = [
    [{"role": "user", "content": "Gold?"}],
    [{"role": "user", "content": "What is the chemical symbol for gold? The quick brown fox jumps."}],
    [{"role": "user", "content": "Hydrogen has atomic number 1"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "helium 2"}],
    [{"role": "user", "content": "The lazy dog. 0123456789 and more words here"}],
]


@pytest.fixture
def talkative_model(model):
    """The tiny model with larger random weights (it otherwise says "\\n" to every prompt), in float64
    so that left padding cannot flip a greedy argmax through rounding."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0, 0.3)
    return model.double()


def test_batched_generation_equals_one_at_a_time_in_input_order(talkative_model, tokenizer):
    model = talkative_model
    batched = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3, progress=False)
    single = [generate_answers(model, tokenizer, [p], max_new_tokens=8, progress=False)[0] for p in PROMPTS]
    assert batched == single
    assert len(set(batched)) > 1  # different prompts gave different outputs, so order is really tested


def test_generation_stops_at_end_of_turn_and_drops_special_tokens(model, tokenizer):
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in stop_token_ids(tokenizer)
    with torch.no_grad():  # make the end-of-turn token the only possible greedy choice
        model.lm_head.weight.zero_()
        model.lm_head.weight[end_of_turn] = 1.0
        model.model.norm.weight.fill_(1.0)
    answers = generate_answers(model, tokenizer, PROMPTS[:2], max_new_tokens=8, progress=False)
    assert answers == ["", ""]


def test_generation_leaves_training_mode_as_it_was(model, tokenizer):
    model.train()
    generate_answers(model, tokenizer, PROMPTS[:1], max_new_tokens=2, progress=False)
    assert model.training
    assert generate_answers(model, tokenizer, [], progress=False) == []


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
