"""The judges of a training run's model graders (train/model_graders.py), loaded in the training process.

    judge = LocalJudge({"ft:judge": "runs/judge/model"}, dtype=torch.bfloat16)
    grader = with_judge(parse_grader(spec), judge)

Each judge model loads once, by what `reinforcement.judges` maps its name to (or by the name itself: a base name, a
model directory, a hub id), and answers through the offline engine (models/decoding/offline.py: the serving
engine's continuous batching, without a server) under the grader's JSON schema, each conversation with its own
seeded generator, so a step's rewards do not depend on which answers share the judge's batch. Its weights are frozen
and never trained; it costs its own memory (the 135M model: about 0.5 GB in float32, 0.27 GB in bf16).
"""
from __future__ import annotations

import torch

from tunesmith.models.chat import render_prompts
from tunesmith.models.decoding.constraints import json_grammar
from tunesmith.models.decoding.offline import answer_token_ids
from tunesmith.models.decoding.requests import SamplingParams
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.train.model_graders import JudgeAnswer


class LocalJudge:
    def __init__(self, refs: dict[str, str], dtype: torch.dtype = torch.float32):
        self.refs, self.dtype, self.loaded = dict(refs), dtype, {}

    def load(self, name: str):
        if name not in self.loaded:
            ref = self.refs.get(name, name)
            model = load_model(ref, self.dtype).eval()
            model.requires_grad_(False)
            self.loaded[name] = (model, load_tokenizer(ref))
        return self.loaded[name]

    def ask_many(self, model: str, conversations: list[list[dict]], schema: dict, sampling: dict) -> list[JudgeAnswer]:
        judge, tokenizer = self.load(model)
        grammar = json_grammar(schema, tokenizer, judge.config.vocab_size)
        seed = sampling.get("seed")
        params = [SamplingParams(max_new_tokens=sampling["max_completion_tokens"], temperature=sampling["temperature"],
                                 top_p=sampling.get("top_p", 1.0), seed=None if seed is None else seed + index,
                                 grammar=grammar) for index in range(len(conversations))]
        prompts = render_prompts(tokenizer, conversations)
        answers = answer_token_ids(judge, tokenizer, prompts, params)
        return [JudgeAnswer(tokenizer.decode(rows[0], skip_special_tokens=True).strip(),
                            {"prompt_tokens": len(prompt), "completion_tokens": len(rows[0]),
                             "total_tokens": len(prompt) + len(rows[0])})
                for prompt, rows in zip(prompts, answers)]
