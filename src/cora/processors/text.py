"""Chat formatting with the tokenizer's own chat template (docs/ARCHITECTURE.md, "Text").

Nothing here writes a template token by hand. The assistant spans that carry labels are
found by rendering the conversation twice with the template: once up to the generation
prompt of an assistant turn, once including that turn; the text in between is the reply
(content plus the template's end-of-turn token). Tokens are labelled through the last
special token of the reply (the end-of-turn token); whitespace the template puts after it
is not.

Qwen3-style templates render the last assistant turn with an empty ``<think>`` block and
accept ``enable_thinking``. Training text must not contain it, so the reply is cut after
the template's own ``enable_thinking=False`` generation prompt, which holds exactly that
block; generation prompts keep it (``<think>\\n\\n</think>\\n\\n`` comes from the template).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


def cut_at_stop(row: Sequence[int], stops: Collection[int], pad_id: int | None = None) -> list[int]:
    """A generated row up to its first stop token (end of turn, eos); without one, trailing ``pad_id``s
    dropped (a row of a batch that finished early is padded)."""
    row = list(row)
    for i, token in enumerate(row):
        if token in stops:
            return row[:i]
    while row and row[-1] == pad_id:
        row.pop()
    return row


class ChatTemplateError(ValueError):
    """The tokenizer has no chat template, or its template cannot be split into turns."""


@dataclass(frozen=True)
class Segment:
    """A piece of rendered conversation text; ``trainable`` pieces carry labels."""

    text: str
    trainable: bool


class ChatFormatter:
    """Turn (query, answer) pairs and multi-turn conversations into token ids and labels.

    The first user message holds one ``vision_token`` placeholder (``"<|vision|>\\n" +
    query``); the model replaces it by the panorama's vision embeddings.
    """

    def __init__(
        self,
        tokenizer: Any,
        system_prompt: str | None = None,
        vision_token: str = "<|vision|>",
        chat_template: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.vision_token = vision_token
        self.chat_template = chat_template
        if chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ChatTemplateError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template")
        ids = tokenizer.convert_tokens_to_ids(vision_token)
        if ids is None or ids == tokenizer.unk_token_id or self._encode(vision_token) != [ids]:
            raise ChatTemplateError(
                f"vision token {vision_token!r} is not a single token of tokenizer "
                f"{getattr(tokenizer, 'name_or_path', '?')!r}: add it as a special token first"
            )
        self.vision_token_id: int = ids
        self._special_ids = set(tokenizer.all_special_ids) | {
            i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(tok, "special", False)
        }
        self._special_tokens = [t for t in tokenizer.convert_ids_to_tokens(sorted(self._special_ids)) if t]
        probe = [{"role": "user", "content": "x"}]
        # The template "supports thinking" when enable_thinking=False changes its generation prompt.
        self.supports_thinking: bool = self._render(probe, generation=True, thinking_off=True) != self._render(
            probe, generation=True
        )
        self.end_of_turn_id: int | None = self._probe_end_of_turn()

    # -- messages -----------------------------------------------------------------------
    def messages(
        self, turns: Sequence[tuple[str, str | None]], system_prompt: str | None = None
    ) -> list[dict[str, str]]:
        """Chat messages for ``turns`` = [(query, answer), ...]; a final ``None`` answer is left out.

        The vision placeholder goes into the first user message only. ``system_prompt`` replaces the
        formatter's own (a chat request's system message).
        """
        if not turns:
            raise ValueError("a conversation needs at least one (query, answer) turn")
        out: list[dict[str, str]] = []
        system = system_prompt if system_prompt is not None else self.system_prompt
        if system:
            out.append({"role": "system", "content": system})
        for i, (query, answer) in enumerate(turns):
            self._check_text(query, f"turn {i} query")
            out.append({"role": "user", "content": f"{self.vision_token}\n{query}" if i == 0 else query})
            if answer is None:
                if i != len(turns) - 1:
                    raise ValueError(f"turn {i}: only the last turn may have no answer")
                continue
            self._check_text(answer, f"turn {i} answer")
            out.append({"role": "assistant", "content": answer})
        return out

    # -- training -----------------------------------------------------------------------
    def encode_train(self, query: str, answer: str) -> dict[str, list[int]]:
        """``{"input_ids", "labels"}`` for one exchange; labels are -100 outside the reply."""
        return self.encode_conversation([(query, answer)])

    def encode_conversation(self, turns: Sequence[tuple[str, str]]) -> dict[str, list[int]]:
        """Multi-turn: every assistant reply (with its end-of-turn token) carries labels."""
        if any(answer is None for _, answer in turns):
            raise ValueError("encode_conversation needs an answer for every turn (use encode_prompt to generate)")
        return self.encode_messages(self.messages(turns))

    def encode_messages(self, messages: Sequence[Mapping[str, str]]) -> dict[str, list[int]]:
        """Token ids and labels for ready-made messages (no vision placeholder is added)."""
        input_ids: list[int] = []
        labels: list[int] = []
        for seg in self.segments(messages):
            ids = self._encode(seg.text)
            input_ids.extend(ids)
            labels.extend(ids if seg.trainable else [IGNORE_INDEX] * len(ids))
        return {"input_ids": input_ids, "labels": labels}

    def training_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The rendered training text (the last reply after the exact generation prompt)."""
        return "".join(seg.text for seg in self.segments(messages))

    def segments(self, messages: Sequence[Mapping[str, str]]) -> list[Segment]:
        """Split the rendered conversation into prompt pieces and assistant replies.

        Only conversations ending with an assistant turn are training examples. The last reply follows
        the exact generation prompt :meth:`prompt_text` gives for its turn (with a Qwen3-style template, one
        ending in an empty think block: thinking off), so the model learns to continue the very text it
        is given when it answers. Earlier replies appear as the template renders them in history (no think
        block), which is also what the generation prompt of a later turn holds.
        """
        messages = [dict(m) for m in messages]
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError("a training conversation must end with an assistant message")
        segments: list[Segment] = []
        done = ""
        last = len(messages) - 1
        for k, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            prompt = self._render(messages[:k], generation=True)
            if not prompt.startswith(done):
                raise ChatTemplateError(
                    f"chat template is not prefix-stable at message {k}: rendering the conversation up to it "
                    "changes the text of earlier turns"
                )
            full = self._render(messages[: k + 1])
            think_prompt = (
                self._render(messages[:k], generation=True, thinking_off=True) if self.supports_thinking else prompt
            )
            # A Qwen3 template renders a final reply after its empty think block (and drops it in history).
            start = think_prompt if full.startswith(think_prompt) else prompt
            if not full.startswith(start):
                raise ChatTemplateError(
                    f"chat template renders assistant message {k} without its generation prompt as a prefix"
                )
            reply = full[len(start) :]
            head, tail = self._split_reply(reply)
            lead = think_prompt if k == last else prompt
            if lead[len(done) :]:
                segments.append(Segment(lead[len(done) :], False))
            segments.append(Segment(head, True))
            if tail:
                segments.append(Segment(tail, False))
            # The conversation so far as later turns render it (history: a Qwen3 template drops the think block).
            done = prompt + reply
        return segments

    # -- generation ---------------------------------------------------------------------
    def prompt_text(self, query: str, history: Sequence[tuple[str, str]] = (), system_prompt: str | None = None) -> str:
        """Generation prompt text; with the template's empty think block where it has one."""
        messages = self.messages([*history, (query, None)], system_prompt)
        return self._render(messages, generation=True, thinking_off=self.supports_thinking)

    def encode_prompt(
        self, query: str, history: Sequence[tuple[str, str]] = (), system_prompt: str | None = None
    ) -> list[int]:
        """Token ids of the generation prompt (one vision placeholder, in the first user turn)."""
        return self._encode(self.prompt_text(query, history, system_prompt))

    def decode(self, ids: Sequence[int]) -> str:
        """Generated ids to text, without special tokens and surrounding whitespace."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids that end a generated reply: the template's end-of-turn token and the eos token."""
        ids = [self.end_of_turn_id, self.tokenizer.eos_token_id]
        return list(dict.fromkeys(i for i in ids if i is not None))

    # -- internals ----------------------------------------------------------------------
    def _render(
        self, messages: Sequence[Mapping[str, str]], generation: bool = False, thinking_off: bool = False
    ) -> str:
        kwargs: dict[str, Any] = {"enable_thinking": False} if thinking_off else {}
        return self.tokenizer.apply_chat_template(
            list(messages),
            tokenize=False,
            add_generation_prompt=generation,
            chat_template=self.chat_template,
            **kwargs,
        )

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _split_reply(self, reply: str) -> tuple[str, str]:
        """Reply text through its last special token (end of turn), and what follows it."""
        ends = [reply.rfind(tok) + len(tok) for tok in self._special_tokens if tok and tok in reply]
        if not ends:
            return reply, ""
        return reply[: max(ends)], reply[max(ends) :]

    def _probe_end_of_turn(self) -> int | None:
        reply = self.segments([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}])
        ids = self._encode(next(s.text for s in reply if s.trainable))
        specials = [i for i in ids if i in self._special_ids]
        return specials[-1] if specials else None

    def _check_text(self, text: Any, what: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"{what} must be a string, got {type(text).__name__}")
        if self.vision_token in text:
            raise ValueError(
                f"{what} contains the vision placeholder {self.vision_token!r}; it is added by the formatter"
            )
