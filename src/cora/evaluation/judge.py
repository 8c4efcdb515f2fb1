"""LLM-as-judge: an OpenAI-compatible chat endpoint grades each prediction against its references.

Requests go through one ``httpx.Client`` per :class:`Judge` (connections reused; ``close()`` or
``with judge:``). Retried: connection errors, timeouts, HTTP 408/409/429/500/502/503/504 and
replies that are cut, not UTF-8, not JSON or hold no text. The wait before a retry is the
server's ``Retry-After`` (seconds or an HTTP date; at most 60 s) or else exponential back-off
with full jitter (``retry_backoff_s * 2**n``, at most ``retry_backoff_max_s``), never past
the request's ``retry_budget_s``. Other HTTP errors fail at once with the server's message.
The retry policy is hand-written on httpx because the ``openai`` package is not a core dependency.
Every answer is cached on disk (one small JSON file per request, written atomically), so an
interrupted run repeats no request. The score is the mean of the judge's 0–10 grades divided by 10;
answers that hold no grade are counted, never scored as 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cora.evaluation.predictions import PredictionGroup, read_predictions
from cora.utils.http import retry_after_s
from cora.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You grade answers about 360-degree panoramas. Compare the candidate answer with the reference answers "
    "to the same question. Judge meaning, not wording. Reply with JSON only: "
    '{"score": <integer 0-10>, "reason": "<one sentence>"}. 10 = as correct and complete as the references, '
    "0 = wrong or unrelated."
)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
RETRY_AFTER_MAX_S = 60.0  # a server asking for longer is waited on for this long, then asked again

# Module-level so tests can replace the clock's waits and the jitter source.
_sleep = time.sleep
_jitter = random.uniform


class JudgeError(RuntimeError):
    """The judge endpoint failed (after retries) or answered something unusable."""


def judge_messages(query: str, prediction: str, references: Sequence[str]) -> list[dict[str, str]]:
    refs = "\n".join(f"- {r}" for r in references) or "- (none)"
    user = f"Question: {query}\nReference answers:\n{refs}\nCandidate answer: {prediction}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_grade(text: str) -> float | None:
    """The 0–10 grade in a judge answer (JSON ``score`` or a leading number), or None."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S).strip()
    match = re.search(r"\{.*\}", text, flags=re.S)
    if match:
        try:
            value = json.loads(match.group(0)).get("score")
            if isinstance(value, int | float) and 0 <= value <= 10:
                return float(value)
        except (json.JSONDecodeError, AttributeError):
            pass  # not a JSON grade: fall back to a plain number in the text below
    match = re.search(r"(?:score\W*)?\b(10|[0-9](?:\.\d+)?)\b", text, flags=re.I)
    return float(match.group(1)) if match else None


@dataclass
class Judge:
    """Client for ``POST {url}/chat/completions`` with retries and a disk cache."""

    url: str
    model: str
    api_key: str | None = None
    max_retries: int = 3
    timeout_s: float = 60.0
    retry_backoff_s: float = 1.0
    max_tokens: int = 256
    concurrency: int = 4
    cache_dir: str | os.PathLike[str] | None = None
    role: str = "judge"  # names the endpoint in errors (the teacher reuses this client)
    retry_backoff_max_s: float = 30.0  # the longest jittered back-off between two attempts
    retry_budget_s: float = 600.0  # no wait runs, and no retry starts, later than this after a request's first try

    def __post_init__(self) -> None:
        # Plain attributes, not fields: equality, repr, replace() and asdict() see only the settings.
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A pickled or deep-copied judge opens its own connections when first used.
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_client_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; a later request opens new ones."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self) -> httpx.Client:
        # Opened on first use and shared by the threads of judge_predictions / the teacher (httpx is thread-safe).
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(timeout=httpx.Timeout(self.timeout_s), follow_redirects=True)
            return self._client

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        return {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens}

    def _cache_path(self, payload: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(json.dumps([self.url, payload], sort_keys=True).encode()).hexdigest()
        return Path(self.cache_dir) / digest[:2] / f"{digest}.json"

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's text for ``messages`` (from the cache when asked before)."""
        payload = self._payload(messages)
        cache = self._cache_path(payload)
        cached = _cached_text(cache) if cache is not None else None
        if cached is not None:
            return cached
        content = self._post(payload)
        if cache is not None:
            atomic_write_json(cache, {"request": _without_image_data(payload), "content": content})
        return content

    def _post(self, payload: dict[str, Any]) -> str:
        endpoint = self.url.rstrip("/") + "/chat/completions"
        data = json.dumps(payload).encode("utf-8")
        deadline = time.monotonic() + self.retry_budget_s
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._attempt(endpoint, data)
            except _Retryable as exc:
                failure = exc
            logger.warning("%s request failed (attempt %d/%d): %s", self.role, attempt, attempts, failure)
            if attempt == attempts:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JudgeError(
                    f"{self.role} endpoint {endpoint} failed after {attempt} attempts "
                    f"(retry budget of {self.retry_budget_s:g} s spent): {failure}"
                ) from failure
            _sleep(self._wait_s(attempt, failure.retry_after_s, remaining))
        raise JudgeError(f"{self.role} endpoint {endpoint} failed after {attempts} attempts: {failure}") from failure

    def _wait_s(self, attempt: int, retry_after_s: float | None, remaining_s: float) -> float:
        """Seconds before attempt ``attempt + 1``: the server's Retry-After, else full-jitter back-off."""
        if retry_after_s is not None:
            wait = min(retry_after_s, RETRY_AFTER_MAX_S)
        else:  # full jitter spreads clients that failed together; the exponent is bounded to stay a float
            wait = _jitter(0.0, min(self.retry_backoff_max_s, self.retry_backoff_s * 2.0 ** min(attempt - 1, 64)))
        return max(0.0, min(wait, remaining_s))

    def _attempt(self, endpoint: str, data: bytes) -> str:
        """One POST: the answer's text, :class:`_Retryable` for a failure worth another try, else JudgeError."""
        try:
            response = self._http().post(endpoint, content=data, headers=self._headers())
        except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as exc:
            # A wrong URL stays wrong: no retry.
            raise JudgeError(f"{self.role} endpoint {endpoint} cannot be used: {exc}") from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:  # refused, reset, timed out, cut, bad encoding
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in RETRY_STATUS:
            detail = f"HTTP {response.status_code}: {_error_message(response)}"
            raise _Retryable(detail, retry_after_s(response.headers))
        if not response.is_success:
            detail = f"HTTP {response.status_code}: {_error_message(response)}"
            raise JudgeError(f"{self.role} endpoint {endpoint} refused the request: {detail}")
        try:
            return _reply_text(response.content)
        except (UnicodeDecodeError, json.JSONDecodeError, _NoText) as exc:  # garbled or textless: ask again
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def grade(self, query: str, prediction: str, references: Sequence[str]) -> tuple[float | None, str]:
        """(grade 0–10 or None when the answer holds none, the raw answer)."""
        answer = self.complete(judge_messages(query, prediction, references))
        return parse_grade(answer), answer


class _NoText(ValueError):
    """A well-formed reply whose ``choices[0].message.content`` is missing or not a string."""


class _Retryable(Exception):
    """One attempt failed in a way another attempt may not; ``retry_after_s`` is the server's requested wait."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


def _error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI's ``error.message``, a plain ``error``/``detail`` string, else the body."""
    text = response.content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            error = error["message"]
        if isinstance(error, str):
            return error[:300]
    return text[:300] or response.reason_phrase


def _reply_text(raw: bytes) -> str:
    """The assistant's text of a chat-completions reply body; anything else raises (and is retried)."""
    body = json.loads(raw.decode("utf-8"))
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _NoText(f"no choices[0].message.content in {str(body)[:200]}") from None
    if not isinstance(content, str):
        raise _NoText(f"choices[0].message.content is {content!r}, not text")
    return content


def _cached_text(path: Path) -> str | None:
    """A cached answer, or None when there is none or it is not text (an older version cached null/7)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))["content"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _without_image_data(payload: dict[str, Any]) -> dict[str, Any]:
    """The request as cached: ``data:`` image URLs (the teacher's tiles) replaced by their digest."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and value.startswith("data:") and len(value) > 256:
            return f"{value.split(',', 1)[0]},<sha256 {hashlib.sha256(value.encode()).hexdigest()}>"
        return value

    return strip(payload)


def build_judge(cfg: Any, default_cache_dir: str | os.PathLike[str] | None = None) -> Judge:
    """A :class:`Judge` from a ``JudgeConfig``; the key comes from the env var it names."""
    return Judge(
        url=cfg.url,
        model=cfg.model,
        api_key=os.environ.get(cfg.api_key_env) or None,
        max_retries=cfg.max_retries,
        timeout_s=cfg.timeout_s,
        retry_backoff_s=cfg.retry_backoff_s,
        max_tokens=cfg.max_tokens,
        concurrency=cfg.concurrency,
        cache_dir=cfg.cache_dir or default_cache_dir,
    )


def judge_predictions(judge: Judge, source: str | os.PathLike[str] | Sequence[PredictionGroup]) -> dict[str, Any]:
    """``{"judge": mean grade / 10, "judge_model", "judge_samples", "judge_ungraded"}`` for a predictions file."""
    groups = read_predictions(source) if isinstance(source, str | os.PathLike) else list(source)
    with ThreadPoolExecutor(max_workers=judge.concurrency) as pool:
        grades = list(pool.map(lambda g: judge.grade(g.query, g.prediction, g.references)[0], groups))
    graded = [g for g in grades if g is not None]
    ungraded = len(grades) - len(graded)
    if ungraded:
        logger.warning("judge: %d of %d answers held no grade (left out of the mean)", ungraded, len(grades))
    return {
        "judge": sum(graded) / (10.0 * len(graded)) if graded else None,
        "judge_model": judge.model,
        "judge_samples": len(graded),
        "judge_ungraded": ungraded,
    }
