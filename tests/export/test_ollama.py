"""The Modelfile: a TEMPLATE built from pieces that rebuild the Jinja chat template's output, stop tokens,
and a refusal for templates that are not a fixed wrapper per message."""
import pytest

from tests.tiny import tiny_tokenizer
from tunesmith.export.errors import ExportError
from tunesmith.export.ollama import modelfile, turn_format
from tunesmith.export.run_export import export

CHATML_MODELFILE = '''FROM ./tiny.gguf
TEMPLATE """{{ if or (not .Messages) (ne (index .Messages 0).Role "system") }}<|im_start|>system
You are a helpful assistant.<|im_end|>
{{ end }}{{ range $i, $_ := .Messages }}{{ if eq .Role "system" }}<|im_start|>system
{{ .Content }}<|im_end|>
{{ else if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}<|im_end|>
{{ end }}{{ if and (eq (len (slice $.Messages $i)) 1) (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}{{ end }}"""
PARAMETER stop "<|im_end|>"
'''


def test_chatml_modelfile():
    assert modelfile("tiny.gguf", tiny_tokenizer()) == CHATML_MODELFILE


def test_pieces_rebuild_the_jinja_rendering():
    tokenizer = tiny_tokenizer()
    turns = turn_format(tokenizer)
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert turns.render(messages, True) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert turns.default_system == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def test_a_template_that_is_not_a_per_message_wrapper_is_refused():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}{{ loop.index }}. {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(ExportError, match="does not wrap each message in fixed text per role"):
        turn_format(tokenizer)


def test_ollama_export_writes_gguf_and_modelfile(tiny_run, tmp_path):
    result = export(str(tiny_run), "ollama", tmp_path / "ollama", "q8_0")
    assert [p.name for p in result.files] == ["run-q8_0.gguf", "Modelfile"]
    assert result.files[1].read_text().startswith("FROM ./run-q8_0.gguf\nTEMPLATE")
