"""Stacked LoRA (models/decoding/stacked_lora.py) on the tiny model: per-row adapters in one pass answer as peft does with
each adapter alone; adding an adapter rebuilds the stacks; adapters it does not cover (here a LoRA bias) go
through peft's mixed batch."""
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.decoding.engine import RunningBatch
from tunesmith.models.decoding.requests import GenerationRequest, SamplingParams, Usage
from tunesmith.models.decoding.stacked_lora import stacked_lora
from tests.tiny import redrawn, tiny_model


def talkative(tokenizer):
    return redrawn(tiny_model(tokenizer))


def add_random_adapter(model, name, **extra):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], **extra)
    if hasattr(model, "peft_config"):
        model.add_adapter(name, config)
    else:
        model = get_peft_model(model, config, adapter_name=name)
    torch.manual_seed(len(model.peft_config))
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "lora_B" in key and f".{name}." in key:
                p.normal_(0, 0.5)  # weights and biases: peft starts B at zero, an adapter that changes nothing
    return model.eval()


def alone(model, tokenizer, prompt, adapter, steps=8):
    """peft's own forward with just this adapter (or none) active: transformers' greedy generate."""
    kwargs = dict(input_ids=torch.tensor([prompt]), max_new_tokens=steps, do_sample=False,
                  eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if adapter is None:
        with model.disable_adapter():
            output = model.generate(**kwargs)
    else:
        model.set_adapter(adapter)
        output = model.generate(**kwargs)
    return tokenizer.decode(output[0, len(prompt):], skip_special_tokens=True)


@torch.inference_mode()
def batched(model, tokenizer, batch, prompt, adapters, steps=8):
    requests = [GenerationRequest(prompt, SamplingParams(max_new_tokens=steps, temperature=0), a, Usage()) for a in adapters]
    batch.admit(model, requests)
    while batch:
        batch.step(model)
    texts = []
    for request in requests:
        items = [request.out.get() for _ in range(request.out.qsize())]
        texts.append("".join(item.text for item in items if item is not None))
    return texts


def test_an_added_adapter_rebuilds_the_stacks_and_every_row_answers_as_its_adapter_alone(tokenizer):
    prompt = render_prompts(tokenizer, [[{"role": "user", "content": "What is the symbol for gold?"}]])[0]
    model = add_random_adapter(talkative(tokenizer), "a")
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    assert batched(model, tokenizer, batch, prompt, [None, "a"]) == [alone(model, tokenizer, prompt, a) for a in (None, "a")]
    first = stacked_lora(model)
    model = add_random_adapter(model, "b")
    order = ["b", None, "a", "b"]
    expected = [alone(model, tokenizer, prompt, a) for a in order]
    assert len(set(expected)) == 3  # each adapter changes the answer
    assert batched(model, tokenizer, batch, prompt, order) == expected
    rebuilt = stacked_lora(model)
    assert rebuilt is not first and any("b" in str(stack.layout) for stack in rebuilt.stacks.values())
    layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
    assert layer.forward.func.__self__ is rebuilt  # the new stacks run the layers, not the first ones
    rebuilt.close()
    assert "forward" not in vars(layer) and not layer._disable_adapters  # peft's own forward back


def test_an_adapter_the_stacks_do_not_cover_goes_through_peft(tokenizer):
    prompt = render_prompts(tokenizer, [[{"role": "user", "content": "Hydrogen?"}]])[0]
    model = add_random_adapter(add_random_adapter(talkative(tokenizer), "a"), "biased", lora_bias=True)
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    order = ["biased", None, "a"]
    expected = [alone(model, tokenizer, prompt, a) for a in order]
    assert batched(model, tokenizer, batch, prompt, order) == expected and stacked_lora(model) is None


def test_a_rank_stabilised_adapter_answers_as_peft_does(tokenizer):
    """lora.rslora's scale, alpha / √r, is the one the stacks multiply by (read from peft's layers)."""
    prompt = render_prompts(tokenizer, [[{"role": "user", "content": "What is the symbol for tin?"}]])[0]
    model = add_random_adapter(add_random_adapter(talkative(tokenizer), "plain"), "stable", use_rslora=True)
    layer = next(m for m in model.modules() if isinstance(m, LoraLayer))
    assert (layer.scaling["plain"], layer.scaling["stable"]) == (8 / 4, 8 / 4 ** 0.5)
    order = ["stable", None, "plain"]
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    assert batched(model, tokenizer, batch, prompt, order) == [alone(model, tokenizer, prompt, a) for a in order]
