"""ChatFormatter: label masks from the template itself, Qwen3 think handling, multi-turn."""

from __future__ import annotations

import pytest

from cora.processors.text import IGNORE_INDEX, ChatFormatter, ChatTemplateError


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of labelled positions."""
    spans, start = [], None
    for i, lab in enumerate([*labels, IGNORE_INDEX]):
        if lab != IGNORE_INDEX and start is None:
            start = i
        elif lab == IGNORE_INDEX and start is not None:
            spans.append((start, i))
            start = None
    return spans


@pytest.fixture(scope="module")
def qwen3_tokenizer(shared_data):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared_data / "tokenizers" / "qwen3-tokenizer")
    tok.add_special_tokens({"additional_special_tokens": ["<|vision|>"]})
    return tok


@pytest.fixture(scope="module")
def kit_tokenizer(kit_paths):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(kit_paths.language_model)


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_qwen3_single_turn_matches_hand_computed_text_and_mask(qwen3_tokenizer):
    tok = qwen3_tokenizer
    fmt = ChatFormatter(tok, system_prompt="Describe panoramas.")
    enc = fmt.encode_train("What is ahead?", "A lake with rocks.")
    # The reply follows exactly the generation prompt, empty think block included (unlabelled): what the
    # model learns to continue is what it is given when it answers (thinking off).
    prompt = (
        "<|im_start|>system\nDescribe panoramas.<|im_end|>\n<|im_start|>user\n<|vision|>\nWhat is ahead?"
        "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert fmt.prompt_text("What is ahead?") == prompt
    reply = "A lake with rocks.<|im_end|>"
    assert enc["input_ids"] == _ids(tok, prompt + reply + "\n")
    n_prompt, n_reply = len(_ids(tok, prompt)), len(_ids(tok, reply))
    assert enc["input_ids"][:n_prompt] == fmt.encode_prompt("What is ahead?")
    assert _spans(enc["labels"]) == [(n_prompt, n_prompt + n_reply)]
    labelled = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    assert labelled[-1] == tok.convert_tokens_to_ids("<|im_end|>") == fmt.end_of_turn_id
    assert tok.decode(labelled) == reply
    assert enc["input_ids"].count(fmt.vision_token_id) == 1


def test_qwen3_generation_prompt_has_empty_think_block(qwen3_tokenizer):
    fmt = ChatFormatter(qwen3_tokenizer)
    assert fmt.supports_thinking
    text = fmt.prompt_text("Where is the sun?")
    assert (
        text == "<|im_start|>user\n<|vision|>\nWhere is the sun?<|im_end|>\n<|im_start|>assistant\n"
        "<think>\n\n</think>\n\n"
    )
    assert fmt.encode_prompt("Where is the sun?") == _ids(qwen3_tokenizer, text)
    assert fmt.stop_token_ids == [qwen3_tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_qwen3_multi_turn_masks_every_reply(qwen3_tokenizer):
    tok = qwen3_tokenizer
    fmt = ChatFormatter(tok)
    turns = [("Describe it.", "A beach at dusk."), ("Any people?", "Two walkers on the left.")]
    enc = fmt.encode_conversation(turns)
    p1 = "<|im_start|>user\n<|vision|>\nDescribe it.<|im_end|>\n<|im_start|>assistant\n"
    r1 = "A beach at dusk.<|im_end|>"
    # Earlier replies as the template renders them in history; the last one after the generation prompt.
    p2 = "\n<|im_start|>user\nAny people?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    r2 = "Two walkers on the left.<|im_end|>"
    assert enc["input_ids"] == _ids(tok, p1 + r1 + p2 + r2 + "\n")
    a = len(_ids(tok, p1))
    b = a + len(_ids(tok, r1))
    c = b + len(_ids(tok, p2))
    d = c + len(_ids(tok, r2))
    assert _spans(enc["labels"]) == [(a, b), (c, d)]
    # the vision placeholder only in the first user turn
    assert enc["input_ids"].count(fmt.vision_token_id) == 1
    # up to the last reply's prompt: what the template itself renders for these turns as history, and the
    # last prompt is the generation prompt given that history
    assert enc["input_ids"][:c] == fmt.encode_prompt("Any people?", history=turns[:1])


@pytest.mark.parametrize("template", ["qwen3-chat-template.llamacpp-2025-04.jinja", "qwen2.5-chat-template.jinja"])
def test_other_real_templates(qwen3_tokenizer, shared_data, template):
    chat_template = (shared_data / "tokenizers" / template).read_text(encoding="utf-8")
    fmt = ChatFormatter(qwen3_tokenizer, chat_template=chat_template)
    enc = fmt.encode_conversation([("q one", "a one"), ("q two", "a two")])
    labelled = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    assert qwen3_tokenizer.decode(labelled) == "a one<|im_end|>a two<|im_end|>"
    text = qwen3_tokenizer.decode(enc["input_ids"])
    assert text.count("<think>") == (0 if template.startswith("qwen2.5") else 1)  # before the last reply only
    if template.startswith("qwen2.5"):
        # Qwen2.5 adds its default system prompt itself, has no thinking switch
        assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
        assert not fmt.supports_thinking
        assert fmt.prompt_text("q").endswith("<|im_start|>assistant\n")
        # without a thinking switch, the generation prompt is exactly the unlabelled start of a training example
        train = fmt.encode_train("q", "an answer")
        prompt = fmt.encode_prompt("q")
        assert train["input_ids"][: len(prompt)] == prompt
        assert set(train["labels"][: len(prompt)]) == {IGNORE_INDEX} and train["labels"][len(prompt)] != IGNORE_INDEX
    else:
        assert fmt.supports_thinking
        assert fmt.prompt_text("q").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_kit_template(kit_tokenizer):
    tok = kit_tokenizer
    fmt = ChatFormatter(tok, system_prompt="sys")
    enc = fmt.encode_train("what is here", "a red cube")
    prompt = (
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n<|vision|>\nwhat is here<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    reply = "a red cube<|im_end|>"
    assert enc["input_ids"] == _ids(tok, prompt) + _ids(tok, reply) + _ids(tok, "\n")
    n = len(_ids(tok, prompt))
    assert _spans(enc["labels"]) == [(n, n + len(_ids(tok, reply)))]
    assert fmt.supports_thinking
    assert fmt.prompt_text("what is here").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert fmt.decode(fmt.encode_prompt("hi")[-3:] + _ids(tok, reply)) == "a red cube"


def test_errors(qwen3_tokenizer, kit_tokenizer, shared_data):
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(shared_data / "tokenizers" / "qwen3-tokenizer")
    with pytest.raises(ChatTemplateError, match=r"vision token '<\|vision\|>' is not a single token"):
        ChatFormatter(bare)
    fmt = ChatFormatter(kit_tokenizer)
    with pytest.raises(ValueError, match="turn 0 query contains the vision placeholder"):
        fmt.encode_train("look <|vision|>", "x")
    with pytest.raises(ValueError, match="must end with an assistant message"):
        fmt.encode_messages([{"role": "user", "content": "x"}])
    with pytest.raises(TypeError, match="turn 0 answer must be a string"):
        fmt.encode_train("q", 3)
    bare.chat_template = None
    bare.add_special_tokens({"additional_special_tokens": ["<|vision|>"]})
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        ChatFormatter(bare)
