"""The written-out decoding step (models/decoding/decode_step.py) on the tiny llama packed, in bf16 and in float32:
logits bit-identical to transformers' forward over the same slot cache, with and without mixed LoRA rows; the engine
takes it where it applies and transformers' forward elsewhere."""
import pytest
import torch

from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.packed_linear import pack_linears
from tunesmith.models.decoding.decode_step import llama_decoder
from tunesmith.models.decoding.engine import RunningBatch
from tunesmith.models.decoding.slot_cache import SlotCache
from tunesmith.models.decoding.stacked_lora import adapters_key, stacked_lora
from tests.serve.test_slot_cache import generated, request
from tests.tiny import lora_model, redrawn, tiny_model

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")


@pytest.fixture
def dtype(packed_dtype):  # tests/conftest.py: bf16 and float32
    return packed_dtype


def packed(tokenizer, dtype=torch.float32):
    model = redrawn(tiny_model(tokenizer).to(dtype))
    pack_linears(model)
    return model


@torch.inference_mode()
def two_steps(model, decode, adapters=None):
    """Logits (rows, V) of two decoding steps after a prefill of prompts of three lengths, through the serving
    cache; `decode(input_ids (B,), positions (B,), mask, cache, lora)` makes each step."""
    cache = SlotCache.for_model(model)
    prompts = [[5, 9, 13, 7, 4, 4], [3, 4, 11], [8, 8, 6, 1, 30]]
    lora = stacked_lora(model) if adapters else None
    steps = []
    with lora.rows(adapters) if lora else torch.no_grad():
        mask = cache.start_prefill([0, 1, 2], 6)
        padded = torch.tensor([p + [0] * (6 - len(p)) for p in prompts])
        model(input_ids=padded, attention_mask=mask, position_ids=torch.arange(6).expand(3, -1), cache=cache, use_cache=True)
        lengths = [len(p) for p in prompts]
        for tokens in ([1, 2, 3], [40, 50, 60]):
            mask = cache.start_decode(lengths)
            steps.append(decode(torch.tensor(tokens), torch.tensor(lengths), mask, cache, lora).float())
            lengths = [n + 1 for n in lengths]
    return torch.cat(steps)


def transformers_step(model):
    def step(input_ids, positions, mask, cache, lora):
        return model(input_ids=input_ids[:, None], attention_mask=mask, position_ids=positions[:, None], cache=cache,
                     use_cache=True).logits[:, -1]
    return step


def decoder_step(causal_lm, key=None):
    def step(input_ids, positions, mask, cache, lora):
        return llama_decoder(causal_lm, key)(input_ids, positions, mask, cache, lora)
    return step


def sibling(tokenizer, family: str, dtype):
    """The tiny llama's shape as a Qwen2 (q/k/v biases) or Mistral model, packed."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "mistral": (MistralConfig, MistralForCausalLM)}[family]
    shape = tiny_model(tokenizer).config.to_dict()
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings")
    torch.manual_seed(0)
    model = model_class(config_class(**{key: shape[key] for key in keys}, sliding_window=None)).eval()
    model = redrawn(model.to(dtype))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("proj.bias"):
                p.normal_(0, 0.5)
    pack_linears(model)
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_the_decoders_logits_equal_transformers_forward(tokenizer, family, dtype):
    model = packed(tokenizer, dtype) if family == "llama" else sibling(tokenizer, family, dtype)
    assert llama_decoder(model) is not None
    expected = two_steps(model, transformers_step(model))
    assert torch.equal(two_steps(model, decoder_step(model)), expected)
    assert not torch.equal(expected[0], expected[1])  # rows differ: a row reading another's cache would show


@pytest.mark.parametrize("targets", [("q_proj", "v_proj", "down_proj"), "all-linear"])
def test_mixed_lora_rows_through_the_decoder_equal_transformers_forward(tokenizer, targets, dtype):
    model = lora_model(packed(tokenizer, dtype), targets=targets)
    adapters = ["a", None, "b"]
    expected = two_steps(model, transformers_step(model), adapters)
    got = two_steps(model, decoder_step(model.get_base_model(), adapters_key(model)), adapters)
    assert torch.equal(got, expected)
    layer = llama_decoder(model.get_base_model(), adapters_key(model)).layers[0]
    direct = [projection.direct[1] is not None for projection in (layer.qkv, layer.o, layer.gate_up, layer.down)]
    assert direct == ([True] * 4 if targets == "all-linear" else [False, False, False, True])  # fused and packed groups
    assert not torch.equal(expected[0], two_steps(model, transformers_step(model))[0])  # the adapters count


def test_the_decoder_is_built_again_when_adapters_wrap_its_linears(tokenizer):
    base = packed(tokenizer)
    before = llama_decoder(base)
    assert before is not None and not before.layers[0].qkv.lora
    model = lora_model(base)
    after = llama_decoder(model.get_base_model(), adapters_key(model))
    assert after is not before and after.layers[0].qkv.lora


def test_models_it_does_not_cover_keep_transformers_forward(tokenizer):
    assert llama_decoder(tiny_model(tokenizer)) is None  # not packed
    windowed = tiny_model(tokenizer)
    windowed.config.sliding_window = 4
    pack_linears(windowed)
    assert llama_decoder(windowed) is None


def test_the_engine_decodes_through_it_and_answers_as_through_transformers(tokenizer, monkeypatch, dtype):
    model = packed(tokenizer, dtype)
    prompts = render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in ["Gold?", "The symbol of iron is what?"]])

    @torch.inference_mode()
    def answers():
        batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
        requests = [request(p, 12) for p in prompts]
        batch.admit(model, requests)
        while batch:
            batch.step(model)
        return [generated(r) for r in requests]

    calls = []
    real = llama_decoder(model).__class__.__call__
    monkeypatch.setattr(llama_decoder(model).__class__, "__call__", lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    through_decoder = answers()
    assert len(calls) >= 10
    monkeypatch.setattr(RunningBatch, "decode", lambda self, *args: None)
    assert answers() == through_decoder


def test_a_model_let_go_is_freed_with_its_decoder_and_stacked_adapters(tokenizer):
    import gc
    import weakref

    plain, wrapped = packed(tokenizer), lora_model(packed(tokenizer))
    assert llama_decoder(plain) is not None and stacked_lora(wrapped) is not None
    assert llama_decoder(wrapped.get_base_model(), adapters_key(wrapped)) is not None
    gone = [weakref.ref(plain), weakref.ref(wrapped)]
    del plain, wrapped
    gc.collect()
    assert [ref() for ref in gone] == [None, None]  # the server's pool drops models: their memory must go too
