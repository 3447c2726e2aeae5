"""Head over the LM vs label tokens scored by the LM, on examples/moderation: equal training, valid figures, time.

Run as: .venv/bin/python benchmarks/classifier_choice.py VARIANT STEPS [THREADS]
  VARIANT: head (all 30 layers of SmolLM2-135M-Instruct), headN (the first N layers), or tokens.
- head: AutoModelForSequenceClassification on the raw text, the last token pooled, a random 13-output head
  (LoRA r=16 on the body, the head whole);
- tokens: the chat model (LoRA r=16) reads an instruction around the text; at the answer position, the LM's
  logit of one word per category (" harassment", " threatening", ...) minus that of " none" is the category's
  logit — one forward pass, every category, the LM's own output layer.
Both train STEPS steps of 16 rows through the shared loop's train_step (ClassificationObjective, balanced
class weights capped at 10, AdamW lr 1e-3, cosine) and are scored on valid.jsonl at 0.5: harmful vs harmless
macro-F1, recall, FPR, category macro-F1, and the AUROC of the highest category score (threshold-free).
Prints one JSON line. Results, and the choice they made, are in train/classify.py's docstring.
"""
from __future__ import annotations

import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoModelForCausalLM, AutoTokenizer
from tunesmith.data.labels import MODERATION_CATEGORIES, load_labeled_file
from tunesmith.data.classification_examples import records_to_classified, ClassifiedExample, classification_text, label_target
from tunesmith.models.resolve import resolve_model_dir
from tunesmith.train.classification_objective import ClassificationObjective
from tunesmith.train.classification_loss import class_weights
from tunesmith.train.loop import LoopSettings, train_step
from tunesmith.train.schedule import step_example_indices, build_scheduler

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
variant, steps = sys.argv[1], int(sys.argv[2])  # see "Run as"
labels = list(MODERATION_CATEGORIES)
d = resolve_model_dir("smollm2-135m-instruct")
tok = AutoTokenizer.from_pretrained(d)
train = load_labeled_file("examples/moderation/train.jsonl", labels).records
valid = load_labeled_file("examples/moderation/valid.jsonl", labels).records
LABEL_WORDS = [" harassment", " threatening", " hate", " threatening", " illicit", " violent", " self", " intent",
               " instructions", " sexual", " minors", " violence", " graphic"]
PROMPT = ("Which content-policy categories does this text fall under (harassment, hate, illicit, self-harm, "
          "sexual, violence), or none?\n\nText: {text}")
torch.manual_seed(0)
if variant.startswith("head"):
    layers = int(variant[4:] or 30)
    model = AutoModelForSequenceClassification.from_pretrained(d, num_labels=13, num_hidden_layers=layers,
            problem_type="multi_label_classification", pad_token_id=tok.pad_token_id)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="SEQ_CLS", modules_to_save=["score"]))
    encode = lambda recs: records_to_classified(recs, tok, labels, 256)
    objective_model = model
else:
    lm = AutoModelForCausalLM.from_pretrained(d)
    lm = get_peft_model(lm, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    label_ids = torch.tensor([tok(w)["input_ids"][0] for w in LABEL_WORDS]); none_id = tok(" none")["input_ids"][0]
    def encode(recs):
        out = []
        for r in recs:
            ids = tok.apply_chat_template([{"role": "user", "content": PROMPT.format(text=classification_text(r))}], tokenize=False, add_generation_prompt=True)
            out.append(ClassifiedExample(tok(ids, add_special_tokens=False)["input_ids"][:300], label_target(r.labels, labels)))
        return out
    class LabelTokenModel(torch.nn.Module):
        def __init__(self, lm): super().__init__(); self.lm = lm
        def forward(self, input_ids, attention_mask):
            hidden = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states[-1]
            last = attention_mask.sum(-1) - 1
            h = hidden[torch.arange(len(last)), last]  # (B, H)
            W = self.lm.get_output_embeddings().weight
            logits = h @ W[label_ids].T - (h @ W[none_id])[:, None]
            return type("O", (), {"logits": logits})
    model = LabelTokenModel(lm)
tr, va = encode(train), encode(valid)
print(variant, "mean tokens", sum(len(e.input_ids) for e in tr) / len(tr), flush=True)
objective = ClassificationObjective(True, class_weights([e.target for e in tr], True, "balanced", 10.0))
settings = LoopSettings(total_steps=steps, batch_size=16, micro_batch_size=16, max_length=300, packing=False, seed=0,
    bf16=False, max_grad_norm=1.0, log_every=10, eval_every=None, save_every=10**9, keep_checkpoints=1,
    pad_id=tok.pad_token_id, objective=objective)
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
sched = build_scheduler(opt, "cosine", 0.1, steps)
model.train(); t0 = time.perf_counter()
for step in range(steps):
    _, idx = step_example_indices(step, len(tr), 16, 0)
    r = train_step(model, opt, sched, [tr[i] for i in idx], settings)
    if step % 10 == 0: print(step, round(r.loss, 4), round(time.perf_counter() - t0), flush=True)
train_s = time.perf_counter() - t0
model.eval(); t0 = time.perf_counter(); scores = []
with torch.no_grad():
    order = sorted(range(len(va)), key=lambda i: len(va[i].input_ids))
    out = torch.empty(len(va), 13)
    for s in range(0, len(order), 32):
        chunk = order[s:s+32]
        b = objective.collate([va[i] for i in chunk], settings)
        out[chunk] = torch.sigmoid(model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits.float())
infer_s = time.perf_counter() - t0
T = torch.tensor([e.target for e in va])
def f1(tp, fp, fn): return 2*tp/(2*tp+fp+fn) if tp else 0.0
pred = out >= 0.5
present = [j for j in range(13) if T[:, j].sum() > 0]
cat_f1 = [f1(int((pred[:, j] & (T[:, j] > 0)).sum()), int((pred[:, j] & (T[:, j] == 0)).sum()), int((~pred[:, j] & (T[:, j] > 0)).sum())) for j in present]
h, f = T.sum(-1) > 0, pred.any(-1)
tp, fp, fn, tn = int((h & f).sum()), int((~h & f).sum()), int((h & ~f).sum()), int((~h & ~f).sum())
# threshold-free view: AUROC of max score for harmful vs harmless
m = out.max(-1).values; pos, neg = m[h], m[~h]
auroc = float((pos[:, None] > neg[None, :]).float().mean())
print(json.dumps({"variant": variant, "steps": steps, "train_examples": steps * 16, "train_s": round(train_s),
  "valid_items_per_s": round(len(va) / infer_s, 1), "binary_macro_f1@0.5": round((f1(tp, fp, fn) + f1(tn, fn, fp)) / 2, 4),
  "harmful_recall@0.5": round(tp / (tp + fn), 3), "harmless_fpr@0.5": round(fp / (fp + tn), 3),
  "category_macro_f1@0.5": round(sum(cat_f1) / len(cat_f1), 4), "harmful_auroc": round(auroc, 4)}), flush=True)
