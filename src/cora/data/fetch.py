"""http(s) images fetched once into a local cache; image sizes from file headers."""

from __future__ import annotations

import hashlib
import io
import logging
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from PIL import Image, UnidentifiedImageError

from cora.data.records import DataError
from cora.utils.io import atomic_open

logger = logging.getLogger(__name__)


def is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def cache_path(url: str, cache_dir: str | Path) -> Path:
    """Where ``url`` is cached: a hash of the URL plus its file suffix."""
    suffix = PurePosixPath(urlparse(url).path).suffix[:8]
    return Path(cache_dir) / "images" / (hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)


# URLs that failed in this process, with their error: a dataset draws a row many times, and a dead
# link must cost one timeout, not one per draw. (A new process, e.g. a rerun, tries again.)
_FAILED: dict[str, str] = {}


def forget_failures() -> None:
    """Try every failed URL again on next use."""
    _FAILED.clear()


def fetch_url(url: str, cache_dir: str | Path, timeout: float = 30.0) -> Path:
    """The local copy of ``url``, downloading it on first use only; only a file that decodes as an image is
    cached (a login page answered with 200 must not become a cached "image" forever).

    Raises :class:`DataError` naming the URL and the cache path when the download fails
    (e.g. no network): the user can put the file there by hand.
    """
    target = cache_path(url, cache_dir)
    if target.is_file():
        return target
    if url in _FAILED:
        raise DataError(_FAILED[url])
    try:
        data = _download(url, target, timeout)
    except DataError as exc:
        _FAILED[url] = str(exc)
        raise
    with atomic_open(target, "wb") as handle:
        handle.write(data)
    logger.info("cached %s -> %s (%d bytes)", url, target, len(data))
    return target


def _download(url: str, target: Path, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {url}: {reason} (is the network reachable? copy the file to {target} or use a local path)"
        ) from exc
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{url}: not an image ({type(exc).__name__}: {exc}; {len(data)} bytes received)") from exc
    return data


def local_path(ref: str, cache_dir: str | Path) -> Path:
    """A local file for an image reference (fetching URLs into the cache)."""
    return fetch_url(ref, cache_dir) if is_url(ref) else Path(ref)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc
