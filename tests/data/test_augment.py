import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.data.augment import (
    AugmentError, Holdout, augment, augment_files, load_spec, read_passages, read_records, write_augmented,
)
from tunesmith.data.formats import load_file
from tunesmith.data.paraphrase import add_paraphrases, parse_candidates, rejection_reason
from tunesmith.data.phrasings import plan_phrasings
from tunesmith.models.chat import stop_token_ids
from tunesmith.models.generate import generate_answers

REPO = Path(__file__).resolve().parents[2]
ELEMENTS = REPO / "examples/elements"

COUNTRIES = [  # name, capital, continent
    ("France", "Paris", "Europe"), ("Japan", "Tokyo", "Asia"), ("Kenya", "Nairobi", "Africa"),
    ("Peru", "Lima", "South America"), ("Canada", "Ottawa", "North America"), ("Egypt", "Cairo", "Africa"),
    ("Norway", "Oslo", "Europe"), ("Chile", "Santiago", "South America"), ("Nepal", "Kathmandu", "Asia"),
    ("Ghana", "Accra", "Africa"),
]
SPEC = {
    "relations": {
        "capital": {
            "answer": "The capital of {country} is {capital}.",
            "eval_answer": "capital",
            "train": ["What is the capital of {country}?", "{country}'s capital city?", "Name the capital of {country}."],
            "valid": ["Which city is the seat of government of {country}?"],
            "eval": ["If you flew to the capital of {country}, where would you land?", "{country} is governed from which city?"],
        },
        "continent": {
            "answer": "{country} is in {continent}.",
            "eval_answer": "continent",
            "train": ["Which continent is {country} in?", "On what continent is {country}?"],
            "valid": ["Where in the world is {country}?"],
            "eval": ["{country} lies on which continent?"],
        },
    },
    "placeholders": {"country": {"field": "name"}},
    "reverse": False,  # the tests below count one direction; test_reverse_* cover the default
}


@pytest.fixture
def workspace(tmp_path):
    csv = tmp_path / "countries.csv"
    csv.write_text("name,capital,continent\n" + "".join(f"{n},{c},{k}\n" for n, c, k in COUNTRIES))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    return tmp_path


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run(workspace, holdout="by-source", seed=0, **kwargs):
    out = workspace / f"out-{holdout}-{seed}"
    augment_files(workspace / "spec.yaml", [workspace / "countries.csv"], [], out, holdout, seed=seed, **kwargs)
    return out


def provenance(out, split):
    return [row for row in read_jsonl(out / "sources.jsonl") if row["split"] == split]


def test_templates_expand_per_field_and_record_their_source(workspace):
    out = run(workspace, "by-template")
    train, sources = read_jsonl(out / "train.jsonl"), provenance(out, "train")
    assert len(train) == len(COUNTRIES) * (3 + 2) == len(sources)  # every train template of both relations
    assert [row["line"] for row in sources] == list(range(1, len(train) + 1))
    for row, where in zip(train, sources):
        name, capital, continent = COUNTRIES[where["source"]["row"] - 1]
        assert where["source"]["file"] == "countries.csv" and where["phrasing"] == "spec"
        question, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        assert question == where["template"].format(country=name)
        assert answer == (f"The capital of {name} is {capital}." if where["relation"] == "capital" else f"{name} is in {continent}.")
    assert load_file(out / "train.jsonl").errors == [] and load_file(out / "valid.jsonl").errors == []


def test_eval_items_are_qa_items_with_the_named_answer(workspace):
    items = read_jsonl(run(workspace, "by-template") / "eval.jsonl")
    assert len(items) == len(COUNTRIES) * 2
    japan = next(item for item in items if item["relation"] == "capital" and "Japan" in item["question"])
    assert japan["answer"] == "Tokyo" and japan["id"] == "capital-2"
    assert set(japan) == {"id", "question", "answer", "relation"}


def test_duplicates_after_normalisation_are_dropped(workspace):
    spec = SPEC | {"relations": {"capital": SPEC["relations"]["capital"] | {
        "train": ["What is the capital of {country}?", "what is the capital of {country}", "Capital of {country}?"]}}}
    (workspace / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = run(workspace, "by-template")
    questions = [row["messages"][0]["content"] for row in read_jsonl(out / "train.jsonl")]
    assert len(questions) == len(COUNTRIES) * 2  # one of the two look-alike templates per country is gone
    assert len({q.casefold().rstrip("?") for q in questions}) == len(questions)


def test_by_source_never_shares_a_source_between_train_and_held_out_splits(workspace):
    out = run(workspace, "by-source", holdout_fraction=0.3)
    rows = {split: {row["source"]["row"] for row in provenance(out, split)} for split in ("train", "valid", "eval")}
    assert rows["train"] and rows["valid"] and rows["eval"]
    assert not rows["train"] & rows["eval"] and not rows["train"] & rows["valid"] and not rows["valid"] & rows["eval"]
    assert len(rows["valid"] | rows["eval"]) == 3  # 30% of 10 sources
    eval_countries = {COUNTRIES[row - 1][0] for row in rows["eval"]}
    for row in read_jsonl(out / "train.jsonl"):
        assert not any(country in row["messages"][0]["content"] for country in eval_countries)


def test_by_template_keeps_phrasings_disjoint_and_sources_everywhere(workspace):
    out = run(workspace, "by-template")
    templates = {split: {row["template"] for row in provenance(out, split)} for split in ("train", "valid", "eval")}
    assert not templates["train"] & templates["valid"] and not templates["train"] & templates["eval"]
    assert not templates["valid"] & templates["eval"]
    for split in ("train", "valid", "eval"):
        assert {row["source"]["row"] for row in provenance(out, split)} == set(range(1, len(COUNTRIES) + 1))


def test_questions_list_is_split_by_fraction_disjointly():
    spec = load_spec_from(SPEC | {"relations": {"capital": {
        "answer": "{capital}", "questions": [f"Question {i} about {{country}}?" for i in range(10)]}}})
    plan = plan_phrasings(spec, seed=3)["capital"]
    texts = {split: {p.text for p in plan[split]} for split in plan}
    assert [len(texts[split]) for split in ("train", "valid", "eval")] == [6, 2, 2]
    assert len(texts["train"] | texts["valid"] | texts["eval"]) == 10
    assert plan_phrasings(spec, seed=3)["capital"] == plan and plan_phrasings(spec, seed=4)["capital"] != plan


def test_output_is_deterministic_for_a_seed(workspace):
    first, again, other = run(workspace, seed=1), run(workspace, seed=1), run(workspace, seed=2)
    for name in ("train.jsonl", "valid.jsonl", "eval.jsonl", "sources.jsonl"):
        assert (first / name).read_bytes() == (workspace / "out-by-source-1" / name).read_bytes()
    assert (first / "train.jsonl").read_bytes() == (again / "train.jsonl").read_bytes()
    assert (first / "sources.jsonl").read_bytes() != (other / "sources.jsonl").read_bytes()


def test_eval_passes_over_a_phrasing_that_gives_the_answer_away(workspace):
    spec = load_spec_from({"relations": {"capital": {
        "answer": "{capital}", "eval_answer": "capital", "train": ["Capital of {name}?"],
        "eval": ["Is {capital} the capital of {name}?", "Where does {name} govern from?"]}}})
    result = augment(spec, read_records(workspace / "countries.csv"), Holdout.by_template, seed=0)
    assert [e.phrasing.text for e in result.eval] == ["Where does {name} govern from?"] * len(COUNTRIES)


def test_missing_values_skip_the_fact_not_the_row(tmp_path):
    records = tmp_path / "r.jsonl"
    records.write_text('{"name": "A", "capital": "X", "continent": ""}\n{"name": "B", "capital": "Y", "continent": "Asia"}\n')
    spec = load_spec_from(SPEC)
    result = augment(spec, read_records(records), Holdout.by_template)
    assert Counter((e.relation, e.source.fields["name"]) for e in result.train) == {
        ("capital", "A"): 3, ("capital", "B"): 3, ("continent", "B"): 2}


def test_a_placeholder_naming_no_field_is_an_error(workspace):
    spec = load_spec_from({"relations": {"capital": {"answer": "{capital}", "train": ["Capital of {contry}?"]}}})
    with pytest.raises(AugmentError, match=r"relations.capital: \{contry\} names no field .*capital, continent, name"):
        augment(spec, read_records(workspace / "countries.csv"), Holdout.by_template)


def test_spec_is_strict_and_names_the_nearest_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"relations": {"capital": {"answr": "x", "train": ["q {a}"]}}}))
    with pytest.raises(AugmentError, match="did you mean 'answer'"):
        load_spec(bad)
    bad.write_text(yaml.safe_dump({"relations": {"capital": {"answer": "x", "train": ["q {a}"], "eval": ["q {a}"]}}}))
    with pytest.raises(AugmentError, match="more than one split"):
        load_spec(bad)
    bad.write_text(yaml.safe_dump({"relations": {"capital": {"answer": "x", "train": ["q {a"]}}}))
    with pytest.raises(AugmentError, match="template 'q {a'"):
        load_spec(bad)


MARKDOWN = """# Tea handbook

Intro paragraph about tea. It has two sentences.

## Brewing

Green tea brews at 80 degrees. Black tea takes boiling water.

```python
# not a heading
steep(minutes=3)
```

## Storage

{long}
"""


def test_documents_split_into_passages_with_sources(tmp_path):
    long = " ".join(f"Sentence {i} says keep tea dry and dark." for i in range(40))  # ~1600 chars, one paragraph
    doc = tmp_path / "tea.md"
    doc.write_text(MARKDOWN.format(long=long))
    passages = read_passages(doc, max_chars=400)
    headings = [p.fields["heading"] for p in passages]
    assert headings[:2] == ["Tea handbook", "Tea handbook > Brewing"]
    assert "# not a heading" in passages[1].fields["text"]  # code fence kept inside its passage
    assert set(headings[2:]) == {"Tea handbook > Storage"} and len(passages) > 4
    assert all(len(p.fields["text"]) <= 400 for p in passages)
    assert " ".join(p.fields["text"] for p in passages[2:]) == long
    intro = passages[0]
    assert intro.fields["opening"] == "Intro paragraph about tea." and intro.fields["rest"] == "It has two sentences."
    assert intro.origin["file"] == "tea.md" and intro.origin["passage"] == 1 and len(intro.origin["sha"]) == 12
    assert {p.fields["document"] for p in passages} == {"Tea handbook"}


def test_documents_through_the_cli_give_recall_examples(tmp_path):
    doc = tmp_path / "tea.md"
    doc.write_text(MARKDOWN.format(long="Keep tea dry. Keep it dark."))
    spec = tmp_path / "docs.yaml"
    spec.write_text(yaml.safe_dump({"relations": {
        "about": {"answer": "{text}", "train": ["What does {document} say about {heading}?", "Tell me about {heading}."],
                  "eval": ["Summarise the part of {document} on {heading}."]},
        "continue": {"answer": "{rest}", "train": ["Continue this passage from {document}: {opening}"]},
    }}))
    result = CliRunner().invoke(app, ["data", "augment", str(spec), "--documents", str(doc), "--out", str(tmp_path / "o"),
                                      "--holdout", "by-template"])
    assert result.exit_code == 0, result.output
    train = read_jsonl(tmp_path / "o/train.jsonl")
    assert len(train) == 3 * 2 + 3  # 3 passages x 2 about-phrasings; every passage has a second sentence
    brewing = [r for r in train if "Brewing" in r["messages"][0]["content"]]
    assert brewing and brewing[0]["messages"][1]["content"].startswith("Green tea brews at 80 degrees.")
    assert {row["source"]["passage"] for row in provenance(tmp_path / "o", "train")} == {1, 2, 3}


def test_cli_writes_splits_and_prints_a_summary(workspace):
    out = workspace / "cli"
    result = CliRunner().invoke(app, ["data", "augment", str(workspace / "spec.yaml"), "--records",
                                      str(workspace / "countries.csv"), "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "capital" in result.output and "duplicates dropped" in result.output
    assert {path.name for path in out.iterdir()} == {"train.jsonl", "valid.jsonl", "eval.jsonl", "sources.jsonl"}
    check = CliRunner().invoke(app, ["data", "check", str(out / "train.jsonl"), "--valid", str(out / "valid.jsonl")])
    assert check.exit_code == 0, check.output
    bad = CliRunner().invoke(app, ["data", "augment", str(workspace / "spec.yaml"), "--out", str(out)])
    assert bad.exit_code == 1 and "--records or --documents" in bad.output


def test_paraphrase_candidates_are_filtered():
    template = "What is the capital of {country}?"
    seen = {"what is the capital of {country}"}
    assert rejection_reason("What's the capital of France?", template, seen) == "placeholders differ"
    assert rejection_reason("Capital of {country} and {city}?", template, seen) == "placeholders differ"
    assert rejection_reason("What is the capital of {country!r}?", template, seen) == "placeholders differ"
    assert rejection_reason("what is the capital of {country} ", template, seen) == "duplicate"
    assert rejection_reason("Capital of {country", template, seen) == "malformed"
    assert rejection_reason("  ", template, seen) == "empty"
    assert rejection_reason("Which city is {country}'s capital?", template, seen) is None
    assert parse_candidates('1. "First {x}?"\n\n2) Second {x}?\n- Third {x}?\nQuestion: Fourth {x}?\nQuick {x}?') == [
        "First {x}?", "Second {x}?", "Third {x}?", "Fourth {x}?", "Quick {x}?"]


def test_paraphrases_join_their_templates_split_and_are_marked_as_model_written(workspace):
    def fake_model(prompts):
        replies = []
        for messages in prompts:
            template = messages[0]["content"].rsplit("Question: ", 1)[1]
            replies.append("\n".join([
                "1. " + template.replace("{country}", "France"),  # lost its placeholder
                "2. " + SPEC["relations"]["capital"]["eval"][1],  # an eval template: would leak
                "3. Kindly answer: " + template,
                "4. Please answer: " + template,
            ]))
        return replies

    spec = load_spec(workspace / "spec.yaml")
    plan, rejections = add_paraphrases(plan_phrasings(spec, 0), 1, fake_model)
    capital = plan["capital"]
    assert [p.text for p in capital["train"] if p.origin == "model"] == [
        "Kindly answer: " + t for t in SPEC["relations"]["capital"]["train"]]  # n=1: the first good one only
    assert all(p.paraphrase_of in SPEC["relations"]["capital"]["eval"] for p in capital["eval"] if p.origin == "model")
    reasons = Counter(r.reason for r in rejections)
    assert reasons["placeholders differ"] == 10 and reasons["duplicate"] >= 9
    assert not any("France" in p.text for splits in plan.values() for ps in splits.values() for p in ps)

    result = augment(spec, read_records(workspace / "countries.csv"), Holdout.by_template, plan=plan)
    write_augmented(result, workspace / "p")
    model_rows = [row for row in provenance(workspace / "p", "train") if row["phrasing"] == "model"]
    assert len(model_rows) == len(COUNTRIES) * 5 and all(row["paraphrase_of"] for row in model_rows)


def test_paraphrases_from_the_tiny_model_are_filtered(workspace, model, tokenizer):
    # The random model answers with EOS or newlines only; zeroing those (tied) embedding rows makes it write gibberish.
    silent = stop_token_ids(tokenizer) + [i for i in range(len(tokenizer)) if not tokenizer.decode([i]).strip()]
    with torch.no_grad():
        model.get_input_embeddings().weight[silent] = 0.0
    prompts_seen = []

    def tiny_generate(prompts):
        prompts_seen.extend(prompts)
        return generate_answers(model, tokenizer, prompts, max_new_tokens=24, batch_size=4, progress=False)

    spec = load_spec(workspace / "spec.yaml")
    before = plan_phrasings(spec, 0)
    plan, rejections = add_paraphrases(before, 2, tiny_generate)
    templates = {p.text for splits in before.values() for ps in splits.values() for p in ps}
    assert len(prompts_seen) == len(templates) == 10  # one batched prompt per template
    for relation, splits in plan.items():
        for split, phrasings in splits.items():
            assert phrasings[: len(before[relation][split])] == before[relation][split]
            for added in phrasings[len(before[relation][split]):]:
                assert added.origin == "model" and rejection_reason(added.text, added.paraphrase_of, set()) is None
    assert all(r.reason in {"empty", "malformed", "placeholders differ", "duplicate"} for r in rejections)
    assert any(r.reason == "placeholders differ" for r in rejections)  # gibberish lost the {country}
    assert sum(p.origin == "model" for splits in plan.values() for ps in splits.values() for p in ps) + len(rejections) >= 10


def test_cli_paraphrases_with_a_local_model(workspace, tiny_model_dir):
    out = workspace / "para"
    result = CliRunner().invoke(app, ["data", "augment", str(workspace / "spec.yaml"), "--records", str(workspace / "countries.csv"),
                                      "--out", str(out), "--paraphrase", "2", "--paraphrase-model", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    assert "model paraphrases kept: 0; rejected: 10 empty" in result.output  # the random model ends at once
    assert len(read_jsonl(out / "train.jsonl")) > 0 and all(row["phrasing"] == "spec" for row in read_jsonl(out / "sources.jsonl"))


def test_shipped_elements_spec_regenerates_the_committed_demo_data():
    spec = load_spec(ELEMENTS / "augment.yaml")
    result = augment(spec, read_records(ELEMENTS / "elements.jsonl"), Holdout.by_template, seed=0)
    for split in ("train", "valid", "eval"):
        rows = [json.dumps(e.row(), ensure_ascii=False) for e in result.split(split)]
        assert rows == (ELEMENTS / f"{split}.jsonl").read_text().splitlines(), split


def test_reverse_relations_ask_one_to_one_facts_the_other_way_by_default(workspace):
    spec = load_spec_from(SPEC | {"reverse": True})
    result = augment(spec, read_records(workspace / "countries.csv"), Holdout.by_template, seed=0)
    by_relation = Counter(e.relation for e in result.train)
    # capital is one-to-one and gets the same share in reverse; continent (three countries in Africa) does not
    assert by_relation == {"capital": 30, "capital_reverse": 30, "continent": 20}
    japan = [e for e in result.train if e.relation == "capital_reverse" and e.source.fields["name"] == "Japan"]
    assert all("The capital of ___ is Tokyo." in e.question and e.answer == "The capital of Japan is Tokyo."
               for e in japan)
    item = next(e.item for e in result.eval if e.relation == "capital_reverse" and e.source.fields["name"] == "Japan")
    assert item["answer"] == "Japan" and "Tokyo" in item["question"]
    templates = {split: {e.phrasing.text for e in result.split(split) if e.relation == "capital_reverse"}
                 for split in ("train", "valid", "eval")}
    assert templates["eval"] and not templates["eval"] & (templates["train"] | templates["valid"])
    assert not templates["valid"] & templates["train"]


def test_reverse_relations_are_not_added_where_the_spec_asks_both_ways(workspace):
    both_ways = SPEC["relations"] | {"country_of_capital": {
        "answer": "{capital} is the capital of {country}.", "eval_answer": "country",
        "train": ["{capital} is the capital of which country?"], "eval": ["Which country is governed from {capital}?"]}}
    spec = load_spec_from(SPEC | {"reverse": True, "relations": both_ways})
    result = augment(spec, read_records(workspace / "countries.csv"), Holdout.by_template, seed=0)
    assert {e.relation for e in result.train} == {"capital", "continent", "country_of_capital"}
    assert load_spec(ELEMENTS / "augment.yaml").reverse  # the demo's spec writes every reverse itself


def load_spec_from(raw: dict):
    from tunesmith.data.augment_spec import AugmentSpec

    return AugmentSpec.model_validate(raw)
