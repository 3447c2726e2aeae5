"""tunesmith's own 4D masks (packed rows, the engine's prefills) under both attention implementations the config
offers: transformers' eager attention adds a 4D mask to its scores, so a bool mask has to become an additive one,
or every token would attend to the tokens after it (the demo trained with eager attention to loss 0.69, not 0.15)."""
import pytest
import torch

from tests.serve.test_offline import QUESTIONS, transformers_greedy
from tests.train.test_packing import examples
from tunesmith.models.attention_mask import for_attention
from tunesmith.models.chat import render_prompts
from tunesmith.models.decoding.offline import greedy_token_ids
from tunesmith.train.forward import batch_loss_sum, final_hidden
from tunesmith.train.packing import collate, collate_placed


def with_attention(model, implementation: str):
    model.set_attn_implementation(implementation)
    assert model.config._attn_implementation == implementation
    return model


def test_a_bool_mask_becomes_additive_for_eager_attention_only(model):
    mask = torch.tensor([[[[True, False], [True, True]]]])
    assert for_attention(with_attention(model, "sdpa"), mask) is mask
    additive = for_attention(with_attention(model, "eager"), mask)
    assert additive.dtype == model.dtype
    assert additive.tolist() == [[[[0.0, torch.finfo(model.dtype).min], [0.0, 0.0]]]]
    assert for_attention(model, additive) is additive  # already additive (the engine's decoding mask)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_rows_with_a_shared_prefix_score_as_examples_alone(tokenizer, model, implementation):
    model = with_attention(model, implementation)
    batch = examples(tokenizer)
    with torch.no_grad():
        packed, placed = collate_placed(batch, tokenizer.pad_token_id, max_length=512, packing=True)
        hidden = final_hidden(model, packed)
        for example, (row, columns) in zip(batch, placed):
            alone = model.get_decoder()(input_ids=torch.tensor([example.input_ids])).last_hidden_state[0]
            assert torch.allclose(hidden[row, columns], alone, atol=1e-4)
        padded = batch_loss_sum(model, collate(batch, tokenizer.pad_token_id, max_length=512, packing=False))
        shared = batch_loss_sum(model, collate(batch, tokenizer.pad_token_id, max_length=512, packing=True, share_prefix=True))
        assert torch.allclose(shared, padded, atol=1e-4)


def test_the_engine_answers_as_generate_under_eager_attention(talkative_model, tokenizer):
    model = with_attention(talkative_model.eval(), "eager")
    prompts = render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])
    answers = greedy_token_ids(model, tokenizer, prompts, max_new_tokens=12, max_rows=3)  # prefills with bool masks
    assert answers == [transformers_greedy(model, tokenizer, prompt, 12) for prompt in prompts]
