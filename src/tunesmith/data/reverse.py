"""The other direction of each one-to-one record relation, asked as a cloze of the relation's own answer.

Run as: library code; `tunesmith data augment` adds these relations unless the spec says `reverse: false`.

A model finetuned on "The atomic number of iron is 26." learns to answer "What is iron's atomic number?"
but not "Which element has atomic number 26?" (the reversal curse, Berglund et al. 2023, arXiv
2309.12288): training teaches the direction the text runs in. So every record relation is also asked
the other way, from its answer value back to its question value, unless

- the spec already asks it (a relation whose answer is this one's question field and whose questions
  use this one's answer field: the elements spec writes both directions by hand), or
- the reverse is ambiguous (two sources share an answer value: "which country is in Africa?"), or
- the relation's questions use more or less than one field, or its answer is a whole sentence.

The reverse question is the answer sentence with the question value blanked ("The capital of ___ is
Paris."), set in wrappers of its own per split, so held-out phrasings are never trained on in this
direction either. A reverse relation gets as many training phrasings as the relation it reverses, so
both directions of a fact keep the same share of the training rows.
"""
from __future__ import annotations

from tunesmith.data.augment_spec import AugmentSpec, Relation, template_fields
from tunesmith.data.sources import Source

BLANK = "___"
WRAPPERS = {  # "{cloze}" is the answer sentence with the question value blanked
    "train": ["Fill in the blank: {cloze}", "Complete the sentence: {cloze}", "{cloze} What goes in the blank?",
              "What completes this statement? {cloze}", "Finish this sentence: {cloze}",
              "Which word or name fills the gap? {cloze}", "Supply the missing part: {cloze}",
              "{cloze} Fill in the missing word.", "Please fill the blank: {cloze}", "Complete this: {cloze}",
              "Replace the blank with the right answer: {cloze}", "What belongs in the blank? {cloze}"],
    "valid": ["Tell me what is missing here: {cloze}", "Gap-fill: {cloze}"],
    "eval": ["Here is a sentence with a missing piece: {cloze} What is the missing piece?",
             "Read this and supply the blank: {cloze}"],
}


def with_reverse_relations(spec: AugmentSpec, sources: list[Source]) -> AugmentSpec:
    """`spec` plus a `<name>_reverse` relation for each relation asked only one way (see the module docstring)."""
    if not spec.reverse or not sources or any("passage" in source.origin for source in sources):
        return spec
    added = {}
    for name, relation in spec.relations.items():
        reverse = reverse_relation(spec, relation, sources)
        if reverse is not None and f"{name}_reverse" not in spec.relations:
            added[f"{name}_reverse"] = reverse
    return spec.model_copy(update={"relations": spec.relations | added}) if added else spec


def field_of(spec: AugmentSpec, placeholder: str) -> str:
    declared = spec.placeholders.get(placeholder)
    return declared.field if declared else placeholder


def question_fields(spec: AugmentSpec, relation: Relation) -> set[str]:
    templates = [*relation.train, *relation.valid, *relation.eval, *relation.questions]
    return {field_of(spec, p) for template in templates for p in template_fields(template)}


def training_phrasings(spec: AugmentSpec, relation: Relation) -> int:
    """How many training templates `relation` has (a `questions` list loses its valid and eval shares)."""
    if not relation.questions:
        return len(relation.train)
    fractions, count = spec.splits.template_fractions, len(relation.questions)
    return count - round(fractions.valid * count) - round(fractions.eval * count)


def reverse_relation(spec: AugmentSpec, relation: Relation, sources: list[Source]) -> Relation | None:
    """The cloze relation asking `relation` backwards, or None when it is asked already, ambiguous or not a field pair."""
    if relation.eval_answer is None:
        return None
    answer_field = field_of(spec, relation.eval_answer)
    asked_from = question_fields(spec, relation) - {answer_field}
    if len(asked_from) != 1:
        return None
    (subject,) = asked_from
    if any(other.eval_answer is not None and field_of(spec, other.eval_answer) == subject
           and answer_field in question_fields(spec, other) for other in spec.relations.values()):
        return None  # the spec asks this direction itself
    values = [str(source.fields.get(answer_field, "")).strip().casefold() for source in sources]
    values = [value for value in values if value]
    if len(values) != len(set(values)):
        return None  # one answer value, several sources: the reverse has no single answer
    blanked = [p for p in template_fields(relation.answer) if field_of(spec, p) == subject]
    if not blanked:
        return None  # the answer sentence never names the question value: nothing to blank
    cloze = relation.answer
    for placeholder in blanked:
        cloze = cloze.replace("{" + placeholder + "}", BLANK)
    train = WRAPPERS["train"][: training_phrasings(spec, relation)]
    return Relation(answer=relation.answer, eval_answer=subject,
                    train=[wrapper.replace("{cloze}", cloze) for wrapper in train],
                    valid=[wrapper.replace("{cloze}", cloze) for wrapper in WRAPPERS["valid"]],
                    eval=[wrapper.replace("{cloze}", cloze) for wrapper in WRAPPERS["eval"]])
