"""The engine without a server (evaluation's generation): transformers' greedy answers, in input order, rows refilled."""
import torch
from transformers import GenerationConfig

from tunesmith.models.chat import pad_token_id, render_prompts, stop_token_ids
from tunesmith.models.decoding.offline import greedy_token_ids

QUESTIONS = ["Gold?", "What is the chemical symbol for gold? The quick brown fox jumps.", "Hydrogen has atomic number 1",
             "helium 2", "The lazy dog. 0123456789 and more words here", "Neon?", "Which element has the symbol Fe?"]


def transformers_greedy(model, tokenizer, prompt: list[int], max_new_tokens: int) -> list[int]:
    stops = stop_token_ids(tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                              pad_token_id=pad_token_id(tokenizer))
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([prompt]), generation_config=config)[0, len(prompt):].tolist()
    ends = [i for i, token in enumerate(out) if token in stops]
    return out[: ends[0] + 1] if ends else out


def test_the_engine_answers_as_transformers_generate_does_with_fewer_rows_than_prompts(talkative_model, tokenizer):
    model = talkative_model.eval()
    prompts = render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])
    finished = []
    answers = greedy_token_ids(model, tokenizer, prompts, max_new_tokens=12, max_rows=3, on_finished=finished.append)
    assert answers == [transformers_greedy(model, tokenizer, prompt, 12) for prompt in prompts]  # float32: exact
    assert len({tuple(a) for a in answers}) > 1  # the prompts' answers differ, so their order is tested
    assert finished == sorted(finished) and finished[-1] == len(prompts)
    assert greedy_token_ids(model, tokenizer, [], max_new_tokens=4) == []
