import json

from tunesmith.data.formats import load_file
from tunesmith.data.render import IGNORE_INDEX, format_trained_tokens, records_to_examples, render_chat, render_text


def chat(*turns):
    return [{"role": role, "content": content} for role, content in turns]


def test_assistant_turns_end_with_trained_end_of_turn_token(tokenizer):
    messages = chat(("user", "Symbol of gold?"), ("assistant", "Au."), ("user", "And hydrogen?"), ("assistant", "H."))
    example = render_chat(tokenizer, messages, max_length=512)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = [i for i, t in enumerate(example.input_ids) if t == im_end]
    trained_ends = [i for i in ends if example.labels[i] == im_end]
    # system, user, assistant, user, assistant: the 2 assistant closings are trained, the rest are not
    assert len(ends) == 5
    assert trained_ends == [ends[2], ends[4]]
    assert format_trained_tokens(tokenizer, example).count("[[") == 2


def test_only_assistant_content_is_trained(tokenizer):
    example = render_chat(tokenizer, chat(("user", "Symbol of gold?"), ("assistant", "Au.")), max_length=512)
    trained = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "Au.<|im_end|>"


def test_weight_zero_turn_is_not_trained(tokenizer):
    messages = chat(("user", "a"), ("assistant", "first"), ("user", "b"), ("assistant", "second"))
    messages[1]["weight"] = 0
    example = render_chat(tokenizer, messages, max_length=512)
    trained = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "second<|im_end|>"


def test_truncation_is_flagged(tokenizer):
    example = render_chat(tokenizer, chat(("user", "x " * 200), ("assistant", "y")), max_length=32)
    assert example.truncated and len(example.input_ids) == 32


def test_raw_text_trains_every_token_and_ends_with_eos(tokenizer):
    chunks = render_text(tokenizer, "The quick brown fox jumps over the lazy dog.", max_length=512)
    assert len(chunks) == 1
    assert chunks[0].labels == chunks[0].input_ids
    assert chunks[0].input_ids[-1] == tokenizer.eos_token_id


def test_records_to_examples(tmp_path, tokenizer):
    chat_path = tmp_path / "train.jsonl"
    chat_path.write_text(json.dumps({"messages": chat(("user", "Symbol of gold?"), ("assistant", "Au."))}) + "\n")
    chats = records_to_examples(load_file(chat_path), tokenizer, 512)
    trained = [t for t, label in zip(chats[0].input_ids, chats[0].labels) if label != IGNORE_INDEX]
    assert len(chats) == 1 and tokenizer.decode(trained) == "Au.<|im_end|>"
    text_path = tmp_path / "corpus.txt"
    text_path.write_text("The quick brown fox jumps over the lazy dog.\n\nHydrogen.\n")
    chunks = records_to_examples(load_file(text_path), tokenizer, max_length=4)
    assert [len(chunk.input_ids) for chunk in chunks[:3]] == [4, 4, 3]  # 11 tokens in chunks of 4
    assert all(chunk.labels == chunk.input_ids for chunk in chunks)


def test_conversational_prompt_completion_trains_only_the_completion(tmp_path, tokenizer):
    row = {"prompt": [{"role": "user", "content": "Gold?"}, {"role": "assistant", "content": "Au."},
                      {"role": "user", "content": "Iron?"}], "completion": [{"role": "assistant", "content": "Fe."}]}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(row) + "\n")
    [example] = records_to_examples(load_file(path), tokenizer, 256)
    trained = [t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == "Fe.<|im_end|>"
