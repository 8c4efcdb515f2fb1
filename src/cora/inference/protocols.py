"""What the server and the evaluation need from a generator: the seam between them and the models.

:class:`AnswerGenerator` is implemented by :class:`cora.inference.PanoramaGenerator` (CORA's own model)
and ``cora.adapt.generator.AdaptGenerator`` (an adapted off-the-shelf VLM), both through
:class:`cora.inference.base.GeneratorBase`. Images are anything the generator's views accept
(paths, ``[H, W, 3]`` uint8 arrays, PIL images).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, runtime_checkable

from cora.inference.decoding import DecodingOptions
from cora.processors.geometry import ViewGeometry


class UnsupportedPrompt(ValueError):
    """A prompt this model cannot take (an adapted VLM answers single questions: no history, no system
    prompt per request); the server answers it with a 400."""


class GeneratorInfo(TypedDict):
    """What a generator says about itself (``GET /health``)."""

    device: str | None
    views: int  # images the model sees per panorama
    view_kinds: list[str]  # e.g. ["global", "tile"]
    decoding: dict[str, Any]  # the default DecodingOptions, as a dict


@dataclass(frozen=True)
class Conversation:
    """A question with what came before it: earlier (question, answer) turns and a system prompt that
    replaces the generator's own (an OpenAI chat request). Generators take it wherever they take a query."""

    query: str
    history: tuple[tuple[str, str], ...] = ()
    system_prompt: str | None = None


Prompt = str | Conversation


class TokenSink(Protocol):
    """Where one row of a batch sends its tokens as they are generated (the server's request jobs)."""

    def token(self, token_id: int) -> None:
        """One new token of this row (stop tokens are not sent; nothing after them is)."""

    def cancelled(self) -> bool:
        """True once nobody wants this row any more: its generation stops at the next token."""


@runtime_checkable
class BatchGenerator(Protocol):
    """Answers for (image, query) pairs, one per pair: all the evaluation needs."""

    def generate(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[str]: ...


@runtime_checkable
class AnswerGenerator(BatchGenerator, Protocol):
    """A generator the server can answer with.

    ``options`` are the defaults; the ``**options`` of each call override :class:`DecodingOptions` fields
    (e.g. ``max_new_tokens=16``).
    """

    options: DecodingOptions

    def generate_ids(self, images: Sequence[Any], queries: Sequence[str], **options: Any) -> list[list[int]]:
        """New token ids per pair, without the stop token."""

    def __call__(self, image: Any, query: str, **options: Any) -> str: ...

    def stream(self, image: Any, query: str, **options: Any) -> Iterator[str]:
        """The answer's text, in pieces as they are generated."""

    def generate_rows(
        self, images: Sequence[Any], queries: Sequence[Prompt], sinks: Sequence[TokenSink], **options: Any
    ) -> list[list[int]]:
        """One batch, each row's tokens handed to its sink as they come; a cancelled row stops (the server's
        dynamic batching). Returns what :meth:`generate_ids` would, cancelled rows cut where they stopped."""

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids of :meth:`generate_ids` → the answer's text."""

    def prompt_tokens(self, query: Prompt) -> int:
        """Tokens of the templated prompt for ``query``: image placeholders count as written, not as the many
        tokens an image becomes inside the model (add :meth:`vision_tokens` for those)."""

    def vision_tokens(self) -> int:
        """Tokens a panorama adds to a prompt beyond its placeholders as written: a prompt's length inside
        the model is ``prompt_tokens(query) + vision_tokens()`` (usage counts)."""

    def describe(self) -> GeneratorInfo: ...

    @property
    def view_geometries(self) -> list[ViewGeometry]:
        """Where each image the model sees of a panorama looks (the page draws them)."""
