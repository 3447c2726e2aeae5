"""The exported files in a real llama.cpp runtime (llama-cpp-python): per-token log-prob parity of f32 and
f16 exports within 0.02 nats of the merged model, the same tokens, a LoRA adapter over the exported base,
and a chat that stops at the end-of-turn token.

llama-cpp-python builds from source (`scripts/setup.sh --tests` installs it); without it these
tests skip and say so.
"""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.export.conftest import FACTS
from tunesmith.export.run_export import export

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: run scripts/setup.sh --tests "
                                "(it builds llama.cpp for the test set-up) to test exports in llama.cpp")

PARITY_NATS = 0.02  # issue 13
TEXTS = ["<|im_start|>user\nSymbol for gold?<|im_end|>\n<|im_start|>assistant\nAu.<|im_end|>\n",
         "The quick brown fox jumps over the lazy dog. 0123456789  spaces\n\ttabs"]


def load(path, lora=None):
    return llama_cpp.Llama(model_path=str(path), lora_path=str(lora) if lora else None, n_ctx=256, n_threads=1,
                           logits_all=True, seed=0, verbose=False)


def llama_cpp_token_log_probs(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    return log_probs[np.arange(len(ids) - 1), ids[1:]]


def merged_token_log_probs(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        log_probs = model(torch.tensor([ids])).logits.log_softmax(-1)[0, :-1]
    return log_probs.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0].double().numpy()


@pytest.fixture(scope="module")
def merged(tiny_run):
    return (AutoModelForCausalLM.from_pretrained(tiny_run / "model").eval(),
            AutoTokenizer.from_pretrained(tiny_run / "model"))


@pytest.mark.parametrize("type_name", ["f32", "f16"])
def test_log_probs_match_the_merged_model(tiny_run, merged, tmp_path, type_name):
    model, tokenizer = merged
    llm = load(export(str(tiny_run), "gguf", tmp_path / f"tiny-{type_name}.gguf", type_name).files[0])
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids  # same tokenizer, no BOS added
        drift = np.abs(llama_cpp_token_log_probs(llm, ids) - merged_token_log_probs(model, ids)).max()
        assert drift <= PARITY_NATS, f"{type_name}: per-token log-probs differ by up to {drift:.4f} nats"


def test_lora_adapter_over_the_exported_base_matches_the_merged_model(tiny_run, export_base, merged, tmp_path):
    model, tokenizer = merged
    base = export(str(export_base), "gguf", tmp_path / "base.gguf", "f32").files[0]
    adapter = export(str(tiny_run), "lora", tmp_path / "adapter.gguf", "f32").files[0]
    ids = tokenizer(TEXTS[0], add_special_tokens=False).input_ids
    drift = np.abs(llama_cpp_token_log_probs(load(base, adapter), ids) - merged_token_log_probs(model, ids)).max()
    assert drift <= PARITY_NATS, f"base + adapter: per-token log-probs differ by up to {drift:.4f} nats"


def test_chat_stops_at_the_end_of_turn_token(tiny_run, tmp_path):
    llm = load(export(str(tiny_run), "gguf", tmp_path / "tiny-f16.gguf", "f16").files[0])
    for name, symbol in FACTS:
        reply = llm.create_chat_completion([{"role": "user", "content": f"Symbol for {name}?"}],
                                           max_tokens=24, temperature=0.0)
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "stop" and reply["usage"]["completion_tokens"] < 24
        assert choice["message"]["content"] == f"{symbol}."  # the trained answer, nothing after <|im_end|>
