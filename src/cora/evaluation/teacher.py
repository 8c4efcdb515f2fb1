"""Pseudo-labelling: a teacher VLM describes each view, the answers become a panorama caption.

For each panorama the configured views are cut (:mod:`cora.processors.views`), each view
is sent to an OpenAI-compatible chat endpoint as a ``data:`` URL with the tile prompt, and
the answers are merged into one caption. Each answer is labelled with the direction its
view looks in, from the view's geometry (yaw 0° = ahead, positive to the right, the
convention of :mod:`cora.processors.geometry`): "Ahead: … To the right: … Behind you: …".
With ``merge: llm`` the endpoint rewrites those notes into one caption.

The client is the judge's (:class:`cora.evaluation.judge.Judge`: one httpx connection pool,
retries with Retry-After or jittered back-off, disk cache), so an interrupted run repeats no
request: a second run reads every answer it already has from the cache and asks only for the
rest. The CSV (``url,query,annotation``) is written once, atomically, at the end. Closing the
teacher (``close()`` or ``with``) closes the client's connections.

>>> with build_teacher(cfg, cache_dir="labels.teacher_cache") as teacher:
...     teacher.describe("pano.jpg").caption     # 'Ahead: a lake. To the right: a boat. …'
"""

from __future__ import annotations

import base64
import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cora.evaluation.judge import Judge, JudgeError
from cora.processors.geometry import ViewGeometry, global_view
from cora.processors.image_io import ImageError, load_image
from cora.processors.views import PanoramaViews, plan_views
from cora.utils.io import atomic_open

logger = logging.getLogger(__name__)

# The eight 45° sectors, as SynthPano's captions name them (cora.data.synth.scene.DIRECTIONS).
DIRECTIONS = (
    "ahead",
    "ahead to the right",
    "to the right",
    "behind you to the right",
    "behind you",
    "behind you to the left",
    "to the left",
    "ahead to the left",
)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
PITCH_LABEL_DEG = 30.0  # views pitched further than this are labelled "above"/"below"


class TeacherError(RuntimeError):
    """Teaching failed: the endpoint (after retries), an unreadable panorama, a bad input list."""


def direction(yaw_deg: float) -> str:
    """The 45° sector a yaw falls in: 0 → "ahead", 90 → "to the right", 180 → "behind you", 270 → "to the left"."""
    return DIRECTIONS[round((yaw_deg % 360.0) / 45.0) % 8]


def view_label(geom: ViewGeometry) -> str:
    """What a view shows, for the merged caption: "overall" for the global view, else its direction
    (with "above"/"below" for views pitched more than 30°; straight up/down has no direction)."""
    if geom.kind == "global":
        return "overall"
    if abs(geom.pitch_deg) >= 90.0 - 1e-6:
        return "above" if geom.pitch_deg > 0 else "below"
    label = direction(geom.yaw_deg)
    if abs(geom.pitch_deg) > PITCH_LABEL_DEG:
        label += ", above" if geom.pitch_deg > 0 else ", below"
    return label


def caption_order(geometries: Sequence[ViewGeometry]) -> list[int]:
    """View indices in caption order: the global view, then by yaw turning right from ahead (0..360),
    higher pitch first at one yaw, straight up/down last."""

    def key(i: int) -> tuple[int, float, float]:
        g = geometries[i]
        if g.kind == "global":
            return (0, 0.0, 0.0)
        if abs(g.pitch_deg) >= 90.0 - 1e-6:
            return (2, -g.pitch_deg, 0.0)
        return (1, round(g.yaw_deg % 360.0, 6), -g.pitch_deg)

    return sorted(range(len(geometries)), key=key)


def clean_answer(text: str) -> str:
    """A teacher answer as caption text: no think block, one line, ends with a full stop."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    text = " ".join(text.split()).strip()
    if text and text[-1] not in ".!?":
        text += "."
    return text


def merge_directions(notes: Sequence[tuple[str, str]]) -> str:
    """``[(label, answer), ...]`` (caption order) → "Ahead: a lake. To the right: a boat." (empty answers left out)"""
    return " ".join(f"{label[0].upper()}{label[1:]}: {answer}" for label, answer in notes if answer)


def encode_view(pixels: np.ndarray, image_format: str = "jpeg", jpeg_quality: int = 90) -> str:
    """``[S, S, 3]`` uint8 RGB → a ``data:image/...;base64,`` URL (deterministic bytes: cached requests match)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
    if image_format == "png":
        ok, buf = cv2.imencode(".png", bgr)
        mime = "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        mime = "image/jpeg"
    if not ok:
        raise TeacherError(f"could not encode a view as {image_format}")
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode('ascii')}"


@dataclass(frozen=True)
class Description:
    """One panorama's caption and the per-view notes it was merged from (caption order)."""

    image: str
    caption: str
    notes: tuple[tuple[str, str], ...]


class Teacher:
    """Describe panoramas view by view with an OpenAI-compatible chat endpoint.

    ``client``: the chat client (``client.complete(messages) -> str``, e.g. :class:`Judge`);
    ``views``: callable ``views(image) -> ViewBatch`` (``pixels [V, 3, S, S]`` in [0, 1]).
    """

    def __init__(
        self,
        client: Judge,
        views: Callable[[Any], Any],
        tile_prompt: str,
        merge: str = "directions",
        merge_prompt: str = "",
        image_format: str = "jpeg",
        jpeg_quality: int = 90,
        concurrency: int = 4,
    ) -> None:
        if merge not in ("directions", "llm"):
            raise ValueError(f"unknown merge {merge!r}; valid: directions, llm")
        self.client = client
        self.views = views
        self.tile_prompt = tile_prompt
        self.merge = merge
        self.merge_prompt = merge_prompt
        self.image_format = image_format
        self.jpeg_quality = jpeg_quality
        self.concurrency = concurrency

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections (a client without ``close``, e.g. a test double, has none to close)."""
        close = getattr(self.client, "close", None)
        if callable(close):
            close()

    def _ask(self, image: str, geom: ViewGeometry, url: str) -> str:
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": self.tile_prompt},
                ],
            }
        ]
        try:
            return clean_answer(self.client.complete(messages))
        except JudgeError as exc:
            raise TeacherError(
                f"{image}: view {geom.index} ({view_label(geom)}, yaw {geom.yaw_deg:g}°, pitch "
                f"{geom.pitch_deg:g}°): {exc}"
            ) from exc

    def describe(self, image: str | os.PathLike[str]) -> Description:
        """Ask about every view of ``image`` and merge the answers."""
        name = str(image)
        try:
            batch = self.views(load_image(name))
        except ImageError as exc:
            raise TeacherError(f"{name}: {exc}") from exc
        pixels = (batch.pixels.clamp(0, 1) * 255.0).round().to(torch.uint8)
        pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()  # [V, S, S, 3]
        geoms = batch.geometries
        urls = [encode_view(p, self.image_format, self.jpeg_quality) for p in pixels]
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            answers = list(pool.map(lambda i: self._ask(name, geoms[i], urls[i]), range(len(geoms))))
        finally:  # after a failure, ask nothing more (answers in flight still reach the cache)
            pool.shutdown(wait=True, cancel_futures=True)
        notes = tuple((view_label(geoms[i]), answers[i]) for i in caption_order(geoms))
        caption = merge_directions(notes)
        if self.merge == "llm" and caption:
            caption = self._merge_llm(name, caption)
        return Description(name, caption, notes)

    def _merge_llm(self, image: str, notes: str) -> str:
        messages = [{"role": "system", "content": self.merge_prompt}, {"role": "user", "content": notes}]
        try:
            return clean_answer(self.client.complete(messages))
        except JudgeError as exc:
            raise TeacherError(f"{image}: merging the views' notes: {exc}") from exc


def build_teacher(cfg: Any, cache_dir: str | os.PathLike[str] | None = None) -> Teacher:
    """A :class:`Teacher` from a ``CoraConfig`` with a ``teacher:`` section; the key comes from the env var
    it names. Views: ``image_processing`` with the teacher's crop strategy, view size and global view."""
    t = cfg.teacher
    if t is None:
        raise TeacherError("the config has no teacher: section (url, model, api_key_env, ...)")
    update: dict[str, Any] = {"image_size": t.image_size, "include_global": t.include_global}
    if t.crop_strategy is not None:
        update["crop_strategy"] = t.crop_strategy
    image_cfg = cfg.image_processing.model_copy(update=update)
    geometries = plan_views(image_cfg)
    if t.include_global and not any(g.kind == "global" for g in geometries):
        geometries = [replace(g, index=i) for i, g in enumerate([global_view(t.image_size), *geometries])]
    views = PanoramaViews(geometries, image_cfg.interpolation, image_cfg.erp_filter, image_cfg.aspect_policy)
    client = Judge(
        url=t.url,
        model=t.model,
        api_key=os.environ.get(t.api_key_env) or None,
        max_retries=t.max_retries,
        timeout_s=t.timeout_s,
        retry_backoff_s=t.retry_backoff_s,
        max_tokens=t.max_tokens,
        concurrency=t.concurrency,
        cache_dir=t.cache_dir or cache_dir,
        role="teacher",
    )
    return Teacher(client, views, t.tile_prompt, t.merge, t.merge_prompt, t.image_format, t.jpeg_quality, t.concurrency)


def list_panoramas(source: str | os.PathLike[str], cache_dir: str | os.PathLike[str] = ".cora/cache") -> list[str]:
    """The panoramas to label: the image files of a folder (sorted, not recursive) or the distinct
    images of a CSV/JSONL dataset (first appearance order; URLs fetched into ``cache_dir``)."""
    from cora.data.fetch import local_path
    from cora.data.readers import read_records
    from cora.data.records import DataError

    path = Path(source)
    if path.is_dir():
        images = sorted(str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise TeacherError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return images
    if not path.is_file():
        raise TeacherError(f"{path}: no such folder or dataset file")
    try:
        records, _ = read_records(path, image_only=True)
        return [str(local_path(r.images[0], cache_dir)) for r in records]
    except DataError as exc:
        raise TeacherError(str(exc)) from exc


def _csv_ref(image: str, out_dir: Path) -> str:
    """The image as the CSV names it: relative to the CSV's folder when inside it (portable), else absolute."""
    absolute = Path(image).resolve()
    try:
        return absolute.relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return str(absolute)


def teach(teacher: Teacher, images: Sequence[str], out_csv: str | os.PathLike[str], query: str) -> dict[str, Any]:
    """Describe every panorama and write ``out_csv`` (``url,query,annotation``) atomically.

    Stops at the first failure with a :class:`TeacherError` naming the panorama and view; the
    answers so far are in the client's cache, so running again resumes. Returns counts.
    """
    out = Path(out_csv)
    rows: list[tuple[str, str, str]] = []
    empty: list[str] = []
    for n, image in enumerate(images, 1):
        description = teacher.describe(image)
        if description.caption:
            rows.append((_csv_ref(image, out.parent), query, description.caption))
        else:
            empty.append(image)
            logger.warning("%s: the teacher gave no text for any view; no row written", image)
        if n % 10 == 0 or n == len(images):
            logger.info("teacher: %d/%d panoramas described", n, len(images))
    with atomic_open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("url", "query", "annotation"))
        writer.writerows(rows)
    return {"panoramas": len(images), "rows": len(rows), "empty": empty, "out": str(out)}
