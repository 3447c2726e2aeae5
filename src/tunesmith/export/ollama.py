"""An Ollama Modelfile for an exported GGUF: a Go-template TEMPLATE that renders what the model's Jinja chat
template renders, and a `PARAMETER stop` line per end-of-turn token.

Run as: library code; `tunesmith export RUN --format ollama --out DIR` writes DIR/Modelfile beside the GGUF,
then `ollama create NAME -f DIR/Modelfile`.

Ollama renders prompts with its own Go template, not the Jinja template inside the GGUF; a Modelfile
without a matching TEMPLATE silently chats in the wrong format, and one without the stop tokens runs past
the end of the answer. The template is not translated from Jinja source: the chat template is rendered on
marker messages to find each role's text before and after its content, the generation prompt and any
default system turn, and the pieces are checked to rebuild the Jinja rendering of a multi-turn
conversation exactly before they are used. A template that is not a per-message wrapper is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tunesmith.export.errors import ExportError
from tunesmith.models.chat import stop_token_ids

ROLES = ("system", "user", "assistant")
MARK = {"system": "\x01SYSTEM\x01", "user": "\x01USER\x01", "assistant": "\x01ASSISTANT\x01"}


@dataclass(frozen=True)
class TurnFormat:
    """prefix[role] + content + suffix[role] per message, `default_system` before a conversation that does
    not open with a system message, `generation` after the last message to start the answer."""

    prefix: dict[str, str]
    suffix: dict[str, str]
    default_system: str
    generation: str

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        text = "" if messages and messages[0]["role"] == "system" else self.default_system
        text += "".join(self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]] for m in messages)
        return text + (self.generation if add_generation_prompt else "")


def render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def turn_format(tokenizer: PreTrainedTokenizerBase) -> TurnFormat:
    """Find the pieces by rendering marker conversations, then prove them on a multi-turn conversation."""
    conversation = [{"role": role, "content": MARK[role]} for role in ROLES]
    full = render(tokenizer, conversation)
    starts = [full.index(MARK[role]) for role in ROLES]
    system_only = render(tokenizer, conversation[:1])
    suffix_system = system_only[system_only.index(MARK["system"]) + len(MARK["system"]):]
    pieces = [full[: starts[0]]]
    for i, role in enumerate(ROLES[:-1]):
        pieces.append(full[starts[i] + len(MARK[role]): starts[i + 1]])
    prefix = {"system": pieces[0]}
    prefix["user"] = pieces[1].removeprefix(suffix_system)
    two = render(tokenizer, conversation[:2])
    suffix_user = two[two.index(MARK["user"]) + len(MARK["user"]):]
    prefix["assistant"] = pieces[2].removeprefix(suffix_user)
    suffix = {"system": suffix_system, "user": suffix_user,
              "assistant": full[starts[2] + len(MARK["assistant"]):]}
    user_only = render(tokenizer, conversation[1:2])
    turns = TurnFormat(prefix, suffix, default_system=user_only[: user_only.index(MARK["user"])].removesuffix(prefix["user"]),
                       generation=render(tokenizer, conversation[:2], add_generation_prompt=True)[len(two):])
    check_turn_format(tokenizer, turns)
    return turns


def check_turn_format(tokenizer: PreTrainedTokenizerBase, turns: TurnFormat) -> None:
    probes = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
               {"role": "user", "content": "Gold?"}],
              [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Gold?"},
               {"role": "assistant", "content": "Au."}, {"role": "user", "content": "Iron?"}]]
    for messages in probes:
        for generation in (False, True):
            if turns.render(messages, generation) != render(tokenizer, messages, generation):
                raise ExportError("chat template: it does not wrap each message in fixed text per role, so no "
                                  "Ollama TEMPLATE was derived from it — write the Modelfile's TEMPLATE by hand "
                                  f"(rendered: {render(tokenizer, messages, generation)!r})")


def go_literal(text: str) -> str:
    """Text placed verbatim in the Go template (no `{{`, which would open an action)."""
    if "{{" in text or '"""' in text:
        raise ExportError(f"chat template: the piece {text!r} holds '{{{{' or '\"\"\"', which a Modelfile TEMPLATE "
                          "cannot hold verbatim — write the TEMPLATE by hand")
    return text


def go_template(turns: TurnFormat) -> str:
    """Ollama's template over .Messages; actions are never trimmed (`{{-`), which would eat the pieces' newlines."""
    roles = "".join(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
                    f"{go_literal(turns.prefix[role])}{{{{ .Content }}}}{go_literal(turns.suffix[role])}"
                    for i, role in enumerate(ROLES))
    default = (f'{{{{ if or (not .Messages) (ne (index .Messages 0).Role "system") }}}}'
               f"{go_literal(turns.default_system)}{{{{ end }}}}") if turns.default_system else ""
    generation = (f'{{{{ if and (eq (len (slice $.Messages $i)) 1) (ne .Role "assistant") }}}}'
                  f"{go_literal(turns.generation)}{{{{ end }}}}")
    return f"{default}{{{{ range $i, $_ := .Messages }}}}{roles}{{{{ end }}}}{generation}{{{{ end }}}}"


def modelfile(gguf_name: str, tokenizer: PreTrainedTokenizerBase) -> str:
    """FROM the GGUF beside it, TEMPLATE, and a stop parameter per end-of-turn token (EOS included)."""
    stops = [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go_template(turn_format(tokenizer))}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n"
