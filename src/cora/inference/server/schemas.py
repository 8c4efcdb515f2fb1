"""Request and response bodies of the server (pydantic).

Requests are validated with :func:`parse`; a field's validator raises ``ValueError`` with the text a
client sees after the field's name (``query: empty``). The first bad field, in the order the fields are
declared here, is the one reported: cheap options before the image.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypedDict, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from starlette.datastructures import UploadFile

from cora.inference.protocols import Conversation
from cora.inference.server.errors import RequestError, from_validation_error

MAX_NEW_TOKENS_LIMIT = 2048

Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], data: Any) -> Model:
    """``data`` validated as ``model``; a 400 :class:`RequestError` naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


# -- fields ---------------------------------------------------------------------------------
# Plain validators: multipart fields arrive as strings, JSON ones typed, and both must give the same answers.


def _question(value: object) -> str:
    if value is None:
        raise ValueError("missing (the question to answer about the panorama)")
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError("empty")
    return value


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _token_limit(value: object) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise ValueError(f"expected a positive integer, got {value!r}")
    limit = int(str(value).strip())
    if not 1 <= limit <= MAX_NEW_TOKENS_LIMIT:
        raise ValueError(f"{limit} is outside 1..{MAX_NEW_TOKENS_LIMIT}")
    return limit


def _temperature(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    return float(value)


def _top_p(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"expected a number in (0, 1], got {value!r}")
    return float(value)


def _base64_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    return value


def _upload(value: object) -> UploadFile:
    if isinstance(value, UploadFile):
        return value
    detail = "missing" if value is None else "a text field"
    raise ValueError(f"{detail} (expected a multipart file field named 'image')")


Question = Annotated[str, PlainValidator(_question)]
Flag = Annotated[bool, PlainValidator(_flag)]
TokenLimit = Annotated[int, PlainValidator(_token_limit)]
Temperature = Annotated[float, PlainValidator(_temperature)]
TopP = Annotated[float, PlainValidator(_top_p)]
Base64Text = Annotated[str, PlainValidator(_base64_text)]
Upload = Annotated[UploadFile, PlainValidator(_upload)]


class DecodingOverrides(TypedDict, total=False):
    """What a request may change of the generator's :class:`~cora.inference.DecodingOptions`."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float


def decoding_overrides(
    max_new_tokens: int | None = None, temperature: float | None = None, top_p: float | None = None
) -> DecodingOverrides:
    """Greedy unless ``temperature > 0`` (OpenAI's ``temperature: 0`` means deterministic)."""
    overrides = DecodingOverrides()
    if max_new_tokens is not None:
        overrides["max_new_tokens"] = max_new_tokens
    if temperature is not None:
        overrides["do_sample"] = temperature > 0
        if temperature > 0:
            overrides["temperature"] = temperature
    if top_p is not None:
        overrides["top_p"] = top_p
    return overrides


# -- /v1/answer -----------------------------------------------------------------------------
class AnswerFields(BaseModel):
    """The fields of ``/v1/answer`` besides the panorama (multipart fields or JSON keys)."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)

    # validated when absent too, so that a missing question says what is expected
    query: Question = Field(None, validate_default=True)
    max_new_tokens: TokenLimit | None = None
    stream: Flag = False

    def decoding(self) -> DecodingOverrides:
        return decoding_overrides(self.max_new_tokens)


class AnswerJSON(AnswerFields):
    """``{"image": "<base64>", "query": ...}``, or ``{"path": ...}`` where the app allows local paths."""

    image: Base64Text | None = None
    path: str | None = None


class AnswerForm(AnswerFields):
    """multipart/form-data: an ``image`` file and text fields."""

    image: Upload = Field(None, validate_default=True)


class AnswerResponse(BaseModel):
    answer: str
    tokens: int  # generated, without the stop token
    ms: float
    finish_reason: Literal["stop", "length"]


# -- /v1/chat/completions -------------------------------------------------------------------
class ImageURL(BaseModel):
    url: str


def _url_object(value: object) -> object:
    """Clients send ``image_url`` as ``{"url": ...}`` or as the URL itself."""
    if isinstance(value, str):
        return {"url": value}
    return {} if value is None else value


class ContentPart(BaseModel):
    """One part of a message's content: text, or the panorama as a ``data:`` URL."""

    type: Literal["text", "image_url"]
    text: str = ""
    image_url: ImageURL | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "text":
            return {"type": kind, "text": value.get("text", "")}
        if kind == "image_url":
            return {"type": kind, "image_url": _url_object(value.get("image_url"))}
        raise ValueError(f"unsupported content part type {kind!r} (text, image_url)")


def _content_parts(value: object) -> object:
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if value is None or isinstance(value, list):
        return value
    raise ValueError("expected a string or a list of parts")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str | None = None
    content: Annotated[list[ContentPart] | None, BeforeValidator(_content_parts)] = None

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("expected an object with role and content")
        return value

    def texts(self) -> list[str]:
        return [part.text for part in self.content or () if part.type == "text"]


def _messages(value: object) -> object:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of {role, content}")
    return value


def _stops(value: object) -> object:
    """OpenAI's ``stop``: a string or up to 4 strings, none empty."""
    stops = [value] if isinstance(value, str) else value
    if value is None:
        return None
    if not isinstance(stops, list) or not 1 <= len(stops) <= 4 or not all(isinstance(x, str) and x for x in stops):
        raise ValueError("expected a non-empty string or a list of 1 to 4 non-empty strings")
    return stops


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


SYSTEM_ROLES = ("system", "developer")


class ChatRequest(BaseModel):
    """OpenAI's chat-completions body. Parameters CORA cannot honour (several answers, tools, structured
    output, log-probabilities, penalties) are refused by name rather than ignored; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: Flag = False
    stream_options: StreamOptions | None = None
    stop: Annotated[list[str] | None, BeforeValidator(_stops)] = None
    messages: Annotated[list[ChatMessage], BeforeValidator(_messages)] = Field(None, validate_default=True)
    # refused unless they ask for what the server does anyway
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None

    def check_supported(self) -> None:
        """400 naming the first parameter the server cannot honour."""
        refused = {
            "n": self.n not in (None, 1) and "only one answer per request (n: 1)",
            "tools": bool(self.tools) and "tool calls are not supported",
            "functions": bool(self.functions) and "function calls are not supported",
            "tool_choice": self.tool_choice not in (None, "none") and "tool calls are not supported",
            "function_call": self.function_call not in (None, "none") and "function calls are not supported",
            "response_format": (self.response_format or {"type": "text"}).get("type") != "text"
            and "only plain text answers ({'type': 'text'})",
            "logprobs": bool(self.logprobs) and "log-probabilities are not returned",
            "top_logprobs": bool(self.top_logprobs) and "log-probabilities are not returned",
            "presence_penalty": bool(self.presence_penalty) and "penalties are not supported (0 only)",
            "frequency_penalty": bool(self.frequency_penalty) and "penalties are not supported (0 only)",
            "logit_bias": bool(self.logit_bias) and "logit_bias is not supported",
        }
        for name, why in refused.items():
            if why:
                raise RequestError(400, f"{name}: {why}", name)

    def decoding(self) -> DecodingOverrides:
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return decoding_overrides(limit, self.temperature, self.top_p)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def image_url(self) -> tuple[str, str]:
        """``(url, field)`` of the last ``image_url`` part of any message."""
        found: tuple[str, str] | None = None
        for i, message in enumerate(self.messages):
            for j, part in enumerate(message.content or ()):
                if part.image_url is not None:
                    found = (part.image_url.url, f"messages[{i}].content[{j}].image_url.url")
        if found is None:
            raise RequestError(
                400,
                "messages: no image_url content part (CORA answers about a panorama: send it as a data: URL)",
                "messages",
            )
        return found

    def conversation(self) -> Conversation:
        """System messages, earlier (user, assistant) turns and the last user message, the question.

        Consecutive user messages are one turn (their texts joined by newlines); the conversation must end
        with the user's question.
        """
        system: list[str] = []
        turns: list[list[str]] = []  # [user text, assistant text or ""]
        for i, message in enumerate(self.messages):
            text = "\n".join(t for t in message.texts() if t.strip())
            if message.role in SYSTEM_ROLES:
                system.append(text)
            elif message.role == "user":
                if turns and not turns[-1][1]:
                    turns[-1][0] = "\n".join(t for t in (turns[-1][0], text) if t)
                else:
                    turns.append([text, ""])
            elif message.role == "assistant":
                if not turns or turns[-1][1]:
                    raise RequestError(
                        400, f"messages[{i}]: an assistant message must answer a user message", "messages"
                    )
                turns[-1][1] = text or " "
            else:
                roles = "system, developer, user, assistant"
                raise RequestError(400, f"messages[{i}].role: {message.role!r} is not supported ({roles})", "messages")
        if not turns or turns[-1][1] or not turns[-1][0].strip():
            raise RequestError(
                400, "messages: the conversation must end with a user message with text (the question)", "messages"
            )
        history = tuple((user, answer) for user, answer in turns[:-1])
        return Conversation(turns[-1][0], history, "\n".join(system) if system else None)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkChoice(BaseModel):
    index: int = 0
    delta: dict[str, str]  # {"role"} first, then {"content"} pieces (never empty), {} with the finish reason
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None  # on the last chunk only, with stream_options.include_usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "cora"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- /health --------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    """The model and its limits; the app's ``info`` (e.g. the run folder) adds fields."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok"] = "ok"
    model: str
    device: str | None
    views: int
    view_kinds: list[str]
    decoding: dict[str, Any]
    max_image_bytes: int
    allow_paths: bool
    batching: dict[str, float] = {}  # limits and counters of the batching worker
