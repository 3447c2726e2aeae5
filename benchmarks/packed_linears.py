"""Packed linears (models/packed_linear.py) against plain `F.linear`, in one dtype, on this CPU: what packing buys.

Run as: .venv/bin/python benchmarks/packed_linears.py --threads 2 [--dtype float32|bfloat16] [--rounds 3]
        [--engine-requests 1,16] [--out FILE]

SmolLM2-135M-Instruct (embedded), its weights in --dtype (default: what the server and the evaluation load on this
CPU, models/load.py's inference_dtype), two copies: plain, and packed as the server packs it (`pack_linears`).
  linears_R     every linear of the model once in forward order (q/k/v and gate/up as the server runs them: one
                product each when packed, three and two when plain), R input rows: 1, 4, 16 and 64 (decoding steps of
                that many rows) and 600 (a prefill), median of 20 passes; `speedup` = plain / packed.
  engine_N      the serving engine alone (the batcher, no HTTP): N chat prompts of examples/general/prompts.jsonl (N of
                --engine-requests, default 1 and 16) decoded together, greedy, 64 new tokens each, stop tokens ignored
                (both sides do the same work); plain = transformers'
                forward over the slot cache, packed = the written-out decoding step (models/decoding/decode_step.py)
                where it applies. The two alternate --rounds times; seconds summed per side.
  max_abs_logit_difference  the first step's logits, packed against plain (bit-identical in bf16; MKL and oneDNN sum in
                other orders in float32).
The machine is shared: read the ratios, and `load_avg_*`.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path

from json_report import emit

ROWS = (1, 4, 16, 64, 600)


def linear_groups(model) -> list[list]:
    """The model's linears in forward order, siblings that read one input (q/k/v, gate/up) as one group."""
    groups = []
    for layer in model.model.layers:
        attention, mlp = layer.self_attn, layer.mlp
        groups += [[attention.q_proj, attention.k_proj, attention.v_proj], [attention.o_proj],
                   [mlp.gate_proj, mlp.up_proj], [mlp.down_proj]]
    return groups + [[model.lm_head]]


def linears_ms(model, rows: int, dtype, passes: int = 20) -> float:
    """Median ms of one pass over every linear group with `rows` input rows."""
    import torch

    groups = linear_groups(model)
    inputs = [torch.randn(rows, group[0].in_features, dtype=dtype) for group in groups]
    times = []
    for _ in range(passes + 3):
        started = time.perf_counter()
        for group, x in zip(groups, inputs):
            for linear in group:
                linear(x)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="default: this CPU's inference dtype")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engine-requests", type=lambda text: [int(n) for n in text.split(",")], default=[1, 16],
                        help="requests decoded together in the engine sides (default 1,16)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from serve_throughput import BASE, engine_tokens_per_s, figures, machine_state, read_prompts
    from tunesmith.models.chat import render_prompts
    from tunesmith.models.load import inference_dtype, load_model, load_tokenizer
    from tunesmith.models.packed_linear import pack_linears

    torch.set_num_threads(args.threads)
    machine = machine_state()  # the load average before
    dtype = getattr(torch, args.dtype) if args.dtype else inference_dtype(None)
    plain = load_model(BASE, dtype=dtype).eval()
    packed = copy.deepcopy(plain)
    count = pack_linears(packed)
    tokenizer = load_tokenizer(BASE)
    report = {"dtype": str(dtype).removeprefix("torch."), "packed_linears": count, "threads": args.threads}
    with torch.inference_mode():
        for rows in ROWS:
            sides = {"plain_ms": linears_ms(plain, rows, dtype), "packed_ms": linears_ms(packed, rows, dtype)}
            report[f"linears_{rows}"] = {**{k: round(v, 2) for k, v in sides.items()},
                                         "speedup": round(sides["plain_ms"] / sides["packed_ms"], 2)}
        ids = render_prompts(tokenizer, [[{"role": "user", "content": p}] for p in read_prompts(16)])
        first = torch.tensor([ids[0]])
        difference = (plain(first).logits.float() - packed(first).logits.float()).abs().max().item()
    report["max_abs_logit_difference"] = difference
    for requests in args.engine_requests:
        runs = {"plain": [], "packed": []}
        for _ in range(args.rounds):
            for side, model in (("plain", plain), ("packed", packed)):
                runs[side].append(engine_tokens_per_s(model, tokenizer, ids[:requests], [None] * requests, 64, to_the_end=True))
        engine = {side: figures(sum(r["seconds"] for r in rs), sum(r["generated_tokens"] for r in rs), requests * args.rounds)
                  for side, rs in runs.items()}
        engine["speedup"] = round(engine["packed"]["generated_tokens_per_s"] / engine["plain"]["generated_tokens_per_s"], 2)
        report[f"engine_{requests}"] = engine
    report["machine"] = {**machine, "load_avg_after": [round(x, 2) for x in os.getloadavg()]}
    emit(report, args.out)


if __name__ == "__main__":
    main()
