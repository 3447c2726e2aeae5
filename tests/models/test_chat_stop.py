"""Every generator stops at the chat template's end-of-turn token even when it is not the tokenizer's EOS.

The tokenizer here is shaped like Qwen's: EOS (and pad) `<|endoftext|>`, turns ended by `<|im_end|>`.
The model is a scripted bigram machine whose greedy answer is ANSWER, then `<|im_end|>`, then a second
turn (AFTER) that only a generator stopping on EOS alone would print. `tunesmith generate`/`chat`, the
evaluation's batched generation and the server must all answer ANSWER and nothing more.
"""
import pytest
import torch
from fastapi.testclient import TestClient
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from tests.tiny import tiny_tokenizer
from tunesmith.cli import app
from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.generate import generate_answers, generate_token_ids
from tunesmith.registry import keys
from tunesmith.serve.app import create_app
from tunesmith.serve.batcher import BatchSlot, complete
from tunesmith.serve.model_pool import ServedModel
from tunesmith.models.decoding.requests import SamplingParams
from tunesmith.serve.settings import ServeSettings

ANSWER = "The symbol for gold is Au."
AFTER = " quick brown fox"
MESSAGES = [{"role": "user", "content": "Gold?"}]


def qwen_like_tokenizer():
    tokenizer = tiny_tokenizer()
    tokenizer.eos_token = tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def scripted_model(tokenizer, script: list[int]) -> LlamaForCausalLM:
    """A llama whose greedy next token depends only on the current one: script[i] → script[i + 1].

    Attention and MLP outputs are zeroed, so the last hidden state is the current token's embedding:
    token script[i] embeds as basis vector e_i and lm_head row script[i + 1] reads e_i. Tokens off the
    script embed as zero, so every logit ties at 0 and argmax picks id 0.
    """
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config).eval()
    assert len(set(script)) == len(script) <= config.hidden_size, "each scripted token needs its own successor"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for i, (token, following) in enumerate(zip(script, script[1:])):
            model.model.embed_tokens.weight[token, i] = 1.0
            model.lm_head.weight[following, i] = 1.0
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return qwen_like_tokenizer()


@pytest.fixture(scope="module")
def prompt(tokenizer):
    return render_prompts(tokenizer, [MESSAGES])[0]


@pytest.fixture(scope="module")
def model(tokenizer, prompt):
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn != tokenizer.eos_token_id and sorted(stop_token_ids(tokenizer)) == sorted(
        {end_of_turn, tokenizer.eos_token_id})
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    script = [prompt[-1], *encode(ANSWER), end_of_turn, *encode(AFTER), tokenizer.eos_token_id]
    return scripted_model(tokenizer, script)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model, tokenizer):
    directory = tmp_path_factory.mktemp("qwen-like")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_the_scripted_model_runs_past_end_of_turn_when_only_eos_stops_it(model, tokenizer, prompt):
    output = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                            max_new_tokens=20, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    assert tokenizer.decode(output[0, len(prompt):], skip_special_tokens=True) == ANSWER + AFTER


def test_evaluation_generation_stops_at_end_of_turn(model, tokenizer):
    (ids,) = generate_token_ids(model, tokenizer, [MESSAGES], max_new_tokens=20, progress=False)
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert generate_answers(model, tokenizer, [MESSAGES], max_new_tokens=20, progress=False) == [ANSWER]


def test_server_engine_stops_at_end_of_turn(model, tokenizer, prompt):
    slot = BatchSlot(ServedModel(model, tokenizer).batcher, None)
    (choice,), usage = complete(prompt, SamplingParams(max_new_tokens=20, temperature=0), slot)
    assert choice == (ANSWER, "stop")
    assert usage.completion_tokens == len(tokenizer(ANSWER, add_special_tokens=False)["input_ids"]) + 1


def test_chat_completions_route_stops_at_end_of_turn(model_dir, tmp_path):
    application = create_app(ServeSettings(home=tmp_path / "home", bases=[str(model_dir)], run_jobs=False))
    with TestClient(application) as client:
        headers = {"Authorization": f"Bearer {keys.create_key(application.state.db)[1]}"}
        body = {"model": model_dir.name, "messages": MESSAGES, "temperature": 0, "max_tokens": 20}
        answer = client.post("/v1/chat/completions", json=body, headers=headers).json()
    assert answer["choices"][0]["message"]["content"] == ANSWER
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_cli_generate_and_chat_stop_at_end_of_turn(model_dir):
    runner = CliRunner()
    generated = runner.invoke(app, ["generate", str(model_dir), "--prompt", "Gold?", "--max-new-tokens", "20"])
    assert generated.exit_code == 0, generated.output
    assert generated.stdout == ANSWER + "\n"
    chatted = runner.invoke(app, ["chat", str(model_dir), "--max-new-tokens", "20"], input="Gold?\n\n")
    assert chatted.exit_code == 0, chatted.output
    assert ANSWER in chatted.stdout and AFTER.strip() not in chatted.stdout
