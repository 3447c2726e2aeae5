"""LoRA fine-tunes served as adapters on one shared base give the merged model's answers; the base stays the base."""
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.config import LoraConfig
from tunesmith.models.chat import render_prompts
from tunesmith.models.packed_linear import packed_dtypes
from tunesmith.serve.batcher import complete
from tunesmith.serve.model_pool import ModelPool
from tunesmith.models.decoding.requests import SamplingParams
from tunesmith.train.export import export_model
from tunesmith.train.lora import PEFT_DEPRECATION, apply_lora


def finetune_like_run(base_dir, run_dir, seed):
    """A run directory (adapter/ + merged model/) from a LoRA with random non-zero weights."""
    model = apply_lora(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=4, alpha=8))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    export_model(model, AutoTokenizer.from_pretrained(base_dir), run_dir)
    return run_dir


def answer(loaded, prompt):
    params = SamplingParams(max_new_tokens=6, temperature=0)
    return complete(prompt, params, loaded.slot)[0][0][0]


def test_adapters_share_one_base_and_match_their_merged_models(tiny_model_dir, tmp_path, recwarn):
    runs = [finetune_like_run(tiny_model_dir, tmp_path / f"run{i}", seed=i) for i in range(2)]
    pool = ModelPool(max_loaded=4)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = render_prompts(tokenizer, [[{"role": "user", "content": "What is the symbol for gold?"}]])[0]
    base_before = answer(pool.get("base", str(tiny_model_dir)), prompt)
    adapters = [pool.get_adapter("base", str(tiny_model_dir), f"ft{i}", run / "adapter") for i, run in enumerate(runs)]
    assert adapters[0].model is adapters[1].model and list(pool.loaded) == ["base"]  # one base in memory
    merged = [answer(ModelPool(1).get("m", str(run)), prompt) for run in runs]
    assert [answer(a, prompt) for a in adapters] == merged and merged[0] != merged[1]
    assert answer(pool.get("base", str(tiny_model_dir)), prompt) == base_before  # adapters disabled for the base
    pool.drop("ft0")
    assert "ft0" not in adapters[1].model.peft_config and answer(adapters[1], prompt) == merged[1]
    assert not [w for w in recwarn if PEFT_DEPRECATION in str(w.message)]  # peft's FutureWarning, nothing to act on


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "float32"])
def test_models_load_in_a_thread_that_is_gone_afterwards(tiny_model_dir, monkeypatch, dtype):
    """The route's thread must not keep an OpenMP pool beside the batcher's (serve/passing_thread.py)."""
    import tunesmith.serve.model_pool as model_pool

    loaders = []
    real_load = model_pool.load_model

    def recording_load(ref, dtype):
        loaders.append(threading.current_thread())
        return real_load(ref, dtype=dtype)

    monkeypatch.setattr(model_pool, "load_model", recording_load)
    pool = ModelPool(max_loaded=1, dtype=dtype)
    loaded = pool.get("base", str(tiny_model_dir))
    assert loaders and loaders[0] is not threading.current_thread() and not loaders[0].is_alive()
    packed = [m for m in loaded.model.modules() if hasattr(m, "packed_weight")]
    assert len(packed) == (2 * 7 + 1 if dtype in packed_dtypes() else 0)  # every linear, in the dtypes packed here


def test_a_load_error_reaches_the_caller(tmp_path):
    with pytest.raises(Exception) as error:
        ModelPool(max_loaded=1).get("missing", str(tmp_path / "no-such-model"))
    assert "no-such-model" in str(error.value)
