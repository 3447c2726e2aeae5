"""A tiny run exported to GGUF and read back by transformers' own GGUF loader: same logits, same tokens,
and the metadata a file needs away from its run (chat template, end of turn, BOS setting, lineage)."""
import json

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.export.gguf_vocab import pre_tokenizer_name
from tunesmith.export.errors import ExportError
from tunesmith.export.run_export import export
from tunesmith.export.tensor_types import EXPORT_TYPES, storage_type

TEXTS = ["<|im_start|>user\nSymbol for gold?<|im_end|>\n<|im_start|>assistant\nAu.<|im_end|>",
         "The quick brown fox jumps over the lazy dog. 0123456789  spaces\n\ttabs"]
# f32/f16 exports must give the merged model's per-token log-probabilities within 0.02 nats
# (issue 13); rounded types must hold exactly their rounding of the merged weights
PARITY_NATS = {"f32": 1e-5, "f16": 0.02}
ROUNDED = {"bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}


def token_log_probs(model, ids: torch.Tensor) -> torch.Tensor:
    """(T-1,) log-probability of each token of the text given the ones before it."""
    with torch.no_grad():
        return model(ids).logits.log_softmax(-1)[0, :-1].gather(-1, ids[0, 1:, None])[:, 0]


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    return {name: export(str(tiny_run), "gguf", out / f"tiny-{name}.gguf", name).files[0]
            for name in [*PARITY_NATS, *ROUNDED]}


def read_back(path):
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.mark.parametrize("type_name", list(PARITY_NATS))
def test_transformers_reads_back_the_same_model(tiny_run, exported, type_name):
    path = exported[type_name]
    merged = AutoModelForCausalLM.from_pretrained(tiny_run / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "model")
    loaded, read_tokenizer = read_back(path), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        assert read_tokenizer(text, add_special_tokens=False).input_ids == ids[0].tolist()
        drift = (token_log_probs(loaded, ids) - token_log_probs(merged, ids)).abs().max().item()
        assert drift <= PARITY_NATS[type_name], f"{type_name}: log-probs moved by {drift}"
    assert read_tokenizer.chat_template == tokenizer.chat_template


@pytest.mark.parametrize("type_name", list(ROUNDED))
def test_rounded_exports_hold_the_rounded_merged_weights(tiny_run, exported, type_name):
    merged = AutoModelForCausalLM.from_pretrained(tiny_run / "model").state_dict()
    loaded = read_back(exported[type_name]).state_dict()
    qtype = ROUNDED[type_name]
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        weights = merged[name].numpy()
        expected = gguf.quants.dequantize(gguf.quants.quantize(weights, qtype), qtype)
        assert np.array_equal(loaded[name].numpy(), expected), name
        assert not np.array_equal(expected, weights)  # the rounding is real, and it is the only change


def test_the_file_carries_tokenizer_settings_and_lineage(tiny_run, exported):
    fields = gguf.GGUFReader(exported["f16"]).fields
    value = {key: fields[key].contents() for key in fields}
    record = json.loads((tiny_run / "run.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tiny_run / "model")
    assert value["general.type"] == "model" and value["general.name"] == "run"
    assert value["general.base_model.0.name"] == record["base_model"] and value["general.license"] == "other"
    assert value["general.dataset.count"] == 1 and value["general.dataset.0.sha256"] == record["train_sha256"]
    assert value["tokenizer.ggml.pre"] == "gpt-2" and value["tokenizer.ggml.model"] == "gpt2"
    assert value["tokenizer.ggml.eot_token_id"] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert value["tokenizer.ggml.add_bos_token"] is False  # the tokenizer adds none; llama.cpp must not either
    assert value["tokenizer.chat_template"] == tokenizer.chat_template
    assert value["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(exported["q8_0"]).tensors}
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert "output.weight" not in types  # tied: llama.cpp reuses token_embd


def test_tensor_type_rules():
    matrix, odd, norm = np.zeros((8, 64)), np.zeros((8, 48)), np.zeros(64)
    q4 = EXPORT_TYPES["q4_0"]
    assert storage_type("blk.0.attn_q.weight", matrix, q4) == gguf.GGMLQuantizationType.Q4_0
    assert storage_type("token_embd.weight", matrix, q4) == gguf.GGMLQuantizationType.Q8_0  # also the tied head
    assert storage_type("blk.0.attn_q.weight", odd, q4) == gguf.GGMLQuantizationType.F16  # rows not in 32-blocks
    assert storage_type("blk.0.attn_norm.weight", norm, EXPORT_TYPES["bf16"]) == gguf.GGMLQuantizationType.F32


def test_pre_tokenizers_are_named_only_when_llama_cpp_has_them():
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name(byte_level, "t.json") == "gpt-2"
    digits = {"type": "Digits", "individual_digits": True}
    assert pre_tokenizer_name({"type": "Sequence", "pretokenizers": [digits, byte_level]}, "t.json") == "smollm"
    with pytest.raises(ExportError, match=r"t.json: pre_tokenizer: .*Metaspace.* has no known llama.cpp equivalent"):
        pre_tokenizer_name({"type": "Metaspace", "replacement": "▁"}, "t.json")


def test_bad_requests_name_what_to_do(tiny_run, tmp_path, tiny_model_dir):
    with pytest.raises(ExportError, match=r"--type: 'q5_k' is not a GGUF export type — use one of f32, f16"):
        export(str(tiny_run), "gguf", tmp_path / "x.gguf", "q5_k")
    with pytest.raises(ExportError, match=r"no LoRA adapter"):
        export(str(tiny_model_dir), "lora", tmp_path / "x.gguf")
    assert not list(tmp_path.iterdir())
