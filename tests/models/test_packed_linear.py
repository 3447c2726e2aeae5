"""oneDNN-packed linears (models/packed_linear.py) on the tiny model in bf16 and in float32: the same logits as plain
`F.linear` (bit-identical in bf16; in float32 within summation-order rounding, MKL and oneDNN summing in other
orders), a repack when a weight changes in place, plain linears where gradients are wanted, and mixed LoRA rows
(models/decoding/stacked_lora.py, whose fused matrix is packed too) answering as on the unpacked model."""
import copy

import pytest
import torch

from tunesmith.models import packed_linear
from tunesmith.models.packed_linear import FLOAT32_PACKED_ROWS, bf16_kernels, pack_linears, packed_dtypes, packing_supported
from tunesmith.models.decoding.slot_cache import SlotCache
from tunesmith.models.decoding.stacked_lora import stacked_lora
from tests.tiny import lora_model, redrawn, tiny_model

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")


@pytest.fixture
def dtype(packed_dtype):  # tests/conftest.py: bf16 and float32
    return packed_dtype


def model_in(tokenizer, dtype):
    return redrawn(tiny_model(tokenizer).to(dtype))


def assert_same(packed: torch.Tensor, plain: torch.Tensor) -> None:
    """Bit-identical in bf16; in float32 within what summing in another order moves (~1e-6 relative)."""
    if packed.dtype == torch.bfloat16:
        assert torch.equal(packed, plain)
    else:
        torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def decode_logits(model, adapters=None):
    """Logits of a prefill of 3 prompts then one decoding step, through the serving cache."""
    cache = SlotCache.for_model(model)
    prompts = torch.tensor([[5, 9, 13, 7], [3, 4, 11, 2], [8, 8, 6, 1]])
    mask = cache.start_prefill([0, 1, 2], 4)
    inputs = dict(attention_mask=mask, position_ids=torch.arange(4).expand(3, -1), cache=cache, use_cache=True)
    lora = stacked_lora(model) if adapters else None
    with lora.rows(adapters) if lora else torch.no_grad():
        first = model(input_ids=prompts, **inputs).logits
        mask = cache.start_decode([4, 4, 4])
        step = model(input_ids=torch.tensor([[1], [2], [3]]), attention_mask=mask, position_ids=torch.tensor([[4]] * 3),
                     cache=cache, use_cache=True).logits
    return torch.cat([first, step], dim=1)


def test_packed_logits_equal_plain_linear_logits(tokenizer, dtype):
    plain = model_in(tokenizer, dtype)
    packed = copy.deepcopy(plain)
    assert pack_linears(packed) == 2 * 7 + 1  # every projection and the lm_head
    assert_same(decode_logits(packed), decode_logits(plain))


def test_float32_is_packed_by_default_where_the_cpu_lacks_bf16_matmuls_or_is_amd(tokenizer, monkeypatch):
    for native_bf16, amd, float32_packed in ((False, False, True), (True, False, False), (True, True, True), (False, True, True)):
        monkeypatch.setattr(packed_linear, "bf16_supported", lambda device, native=native_bf16: native)
        monkeypatch.setattr(packed_linear, "amd_cpu", lambda amd=amd: amd)
        assert (torch.float32 in packed_dtypes()) == float32_packed, (native_bf16, amd)
        assert packing_supported(model_in(tokenizer, torch.float32)) == float32_packed
        assert packing_supported(model_in(tokenizer, torch.bfloat16)) == bf16_kernels()


def test_a_weight_changed_in_place_is_repacked(tokenizer, dtype):
    model = model_in(tokenizer, dtype)
    pack_linears(model)
    layer = model.model.layers[0].mlp.down_proj
    x = torch.randn(3, layer.in_features, dtype=dtype)
    with torch.inference_mode():
        before = layer(x)
    with torch.no_grad():
        layer.weight.mul_(-1)  # same tensor, new values
    with torch.inference_mode():
        after = layer(x)
        assert_same(after, torch.nn.functional.linear(x, layer.weight))
        assert torch.equal(after, -before)


def test_siblings_that_read_one_input_share_one_packed_product(tokenizer, dtype):
    model = model_in(tokenizer, dtype)
    pack_linears(model)
    attention, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    group, _ = attention.q_proj.packed_group
    assert [layer.packed_group for layer in (attention.k_proj, attention.v_proj)] == [(group, 1), (group, 2)]
    assert mlp.up_proj.packed_group[0] is mlp.gate_proj.packed_group[0] and "packed_group" not in vars(mlp.down_proj)
    x, other = (torch.randn(3, attention.q_proj.in_features, dtype=dtype) for _ in range(2))
    plain = lambda layer, x: torch.nn.functional.linear(x, layer.weight)
    with torch.inference_mode():
        q = attention.q_proj(x)
        assert group.product.output is not None  # k and v will take their columns of it
        k, v = attention.k_proj(x), attention.v_proj(x)
        assert group.product.output is None  # every sibling took its part: the product is let go
        k_other = attention.k_proj(other)  # another input: computed afresh
        for layer, out, inp in ((attention.q_proj, q, x), (attention.k_proj, k, x), (attention.v_proj, v, x),
                                (attention.k_proj, k_other, other)):
            assert_same(out, plain(layer, inp))
    with torch.no_grad():
        attention.v_proj.weight.mul_(-1)  # one sibling's weight changes in place: the group repacks
    with torch.inference_mode():
        attention.q_proj(x)
        assert torch.equal(attention.v_proj(x), -v)


def test_with_gradients_the_plain_linear_runs(tokenizer, dtype):
    model = model_in(tokenizer, dtype)
    pack_linears(model)
    layer = model.model.layers[0].self_attn.q_proj
    out = layer(torch.randn(2, layer.in_features, dtype=dtype, requires_grad=True))
    assert out.requires_grad  # the packed op has no backward; training a packed model still works


def plain_and_packed_lora(tokenizer, dtype, **lora):
    """The same LoRA model twice (adapters a and b), on a plain and on a packed base."""
    models = []
    for pack in (False, True):
        base = model_in(tokenizer, dtype)
        if pack:
            pack_linears(base)
        models.append(lora_model(base, **lora))
    return models


def test_mixed_lora_rows_on_a_packed_base_equal_the_unpacked_base(tokenizer, dtype):
    models = plain_and_packed_lora(tokenizer, dtype)
    adapters = ["a", None, "b"]
    plain, packed = (decode_logits(model, adapters) for model in models)
    stack = next(iter(stacked_lora(models[1]).stacks.values()))
    assert stack.packed is not None and stacked_lora(models[0]).stacks and \
        next(iter(stacked_lora(models[0]).stacks.values())).packed is None
    assert not torch.equal(plain[0], plain[1])  # the adapters change the logits
    assert_same(packed, plain)


def test_mixed_lora_on_packed_siblings_runs_one_pass_per_group_and_answers_as_the_unpacked_base(tokenizer, dtype):
    models = plain_and_packed_lora(tokenizer, dtype, targets="all-linear")
    adapters = ["a", None, "b"]
    plain, packed = (decode_logits(model, adapters) for model in models)
    lora = stacked_lora(models[1])
    joints = {id(joint) for joint, _ in lora.sibling_stacks.values()}
    assert len(lora.sibling_stacks) == 2 * 5 and len(joints) == 2 * 2  # q/k/v and gate/up of both layers
    assert not stacked_lora(models[0]).sibling_stacks  # unpacked: no packed groups to follow
    assert not torch.equal(plain[0], plain[1])
    assert_same(packed, plain)


def test_float32_takes_the_packed_product_only_for_the_row_counts_where_it_is_faster(tokenizer):
    model = model_in(tokenizer, torch.float32)
    pack_linears(model)
    attention, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    group, _ = attention.q_proj.packed_group
    low, high = FLOAT32_PACKED_ROWS
    with torch.inference_mode():
        for rows in sorted({1, 2, max(1, low - 1), low, 16, high, high + 1, 600}):
            packed = low <= rows <= high  # 3-48 rows; 1-48 on an AMD CPU
            x = torch.randn(rows, attention.q_proj.in_features)
            out = attention.q_proj(x)
            assert (group.product.output is not None) == packed, rows  # k and v would take their columns of it
            group.product.output = group.product.input = None
            if not packed:
                assert torch.equal(out, torch.nn.functional.linear(x, attention.q_proj.weight))
                wide = torch.randn(rows, mlp.down_proj.in_features)  # a linear of its own: the same rule
                assert torch.equal(mlp.down_proj(wide), torch.nn.functional.linear(wide, mlp.down_proj.weight))
        x = torch.randn(2, 5, attention.q_proj.in_features)  # (batch, tokens, in): 10 rows in all
        attention.q_proj(x)
        assert group.product.output is not None
    if bf16_kernels():
        bf16 = model_in(tokenizer, torch.bfloat16)
        pack_linears(bf16)
        bf16_q = bf16.model.layers[0].self_attn.q_proj
        with torch.inference_mode():
            bf16_q(torch.randn(1, bf16_q.in_features, dtype=torch.bfloat16))
        assert bf16_q.packed_group[0].product.output is not None  # bf16: one row packed too
