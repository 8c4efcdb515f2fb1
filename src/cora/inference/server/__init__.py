"""HTTP server around an :class:`~cora.inference.AnswerGenerator` (FastAPI; ``cora serve`` runs it).

Endpoints:

- ``GET /health``: model name, views, decoding options, device.
- ``POST /v1/answer``: a panorama and a query, as multipart (``image`` file + ``query``
  field) or JSON (``{"image": "<base64>", "query": ...}``; ``{"path": ...}`` only when the
  app allows local paths). ``stream=true`` answers with ``text/event-stream``: one
  ``data: {"text": ...}`` event per piece, then ``event: done`` with the whole answer.
  Otherwise ``{"answer", "tokens", "ms", "finish_reason"}``. ``max_new_tokens`` caps the answer.
- ``POST /v1/chat/completions``: the OpenAI chat format; the panorama is an ``image_url``
  content part holding a ``data:`` URL, the query is the last user message's text
  (``stream: true`` gives OpenAI chunks and ``data: [DONE]``).

One model answers one request at a time (a lock around it): the model is not thread-safe
and, on a CPU, concurrent requests would only compete for the same cores. Bad input gets
a 4xx JSON error in OpenAI's shape, ``{"error": {"message", "type", "param"}}``, where
``param`` names the field (``messages[0].content[1].image_url.url``).

Modules: :mod:`.app` (``create_app``), :mod:`.service` (decoding, limits, the model lock),
:mod:`.schemas` (request and response bodies), :mod:`.errors`, and one router per endpoint.
"""

from cora.inference.server.app import create_app
from cora.inference.server.errors import RequestError
from cora.inference.server.schemas import MAX_NEW_TOKENS_LIMIT
from cora.inference.server.service import DEFAULT_MAX_IMAGE_BYTES, PanoramaService

__all__ = ["DEFAULT_MAX_IMAGE_BYTES", "MAX_NEW_TOKENS_LIMIT", "PanoramaService", "RequestError", "create_app"]
