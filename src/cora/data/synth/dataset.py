"""SynthPano: an indexable synthetic dataset, its text corpus, and the file writer.

Sample ``i`` of ``SynthPano(n, seed)`` depends only on ``(seed, i)``, so any subset can be
rendered in any order or process and the files written are the same bytes every time.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cora.data.records import CAPTION_QUERY
from cora.data.synth.language import caption, needs_seam, qa_pairs, question_type
from cora.data.synth.render import erp_bbox, render_erp
from cora.data.synth.scene import Scene, sample_scene
from cora.utils.io import atomic_open, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
PNG_COMPRESS_LEVEL = 6  # fixed: the same scene gives the same PNG bytes
# The layout of the files written, kept in synth.json: a dataset written in an older layout is
# rewritten by ensure_synth_dataset. 2: the CSVs' type/seam columns and the JSONL qa type/seam.
FORMAT_VERSION = 2
CSV_HEADER = ["url", "query", "annotation", "type", "seam"]


@dataclass(frozen=True)
class SynthSample:
    index: int
    scene: Scene
    caption: str
    qa: list[tuple[str, str]]
    image: np.ndarray | None = None  # [H, W, 3] uint8
    ids: np.ndarray | None = None  # [H, W] int16, -1 = background
    bboxes: list[list[int] | None] | None = None  # per object, ERP pixels, x1 > x2 across the seam


class SynthPano:
    """``n`` synthetic panoramas with known contents, deterministic in ``seed``."""

    def __init__(
        self, n: int, seed: int = 0, width: int = 512, height: int = 256, min_objects: int = 2, max_objects: int = 5
    ) -> None:
        if n < 1:
            raise ValueError(f"SynthPano needs n >= 1, got {n}")
        if width != 2 * height:
            raise ValueError(f"an ERP panorama is 2:1, got {width}x{height}")
        self.n, self.seed, self.width, self.height = n, seed, width, height
        self.min_objects, self.max_objects = min_objects, max_objects

    def __len__(self) -> int:
        return self.n

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index, stream])

    def scene(self, index: int) -> Scene:
        return sample_scene(self._rng(index, 0), self.min_objects, self.max_objects)

    def text(self, index: int) -> SynthSample:
        """The scene and its text, without rendering."""
        scene = self.scene(index)
        return SynthSample(index, scene, caption(scene), qa_pairs(scene, self._rng(index, 1)))

    def __getitem__(self, index: int) -> SynthSample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        sample = self.text(index)
        image, ids = render_erp(sample.scene, self.width, self.height)
        bboxes = [erp_bbox(ids, i) for i in range(len(sample.scene.objects))]
        return SynthSample(index, sample.scene, sample.caption, sample.qa, image, ids, bboxes)


def synth_corpus(
    n: int = 500, seed: int = 0, splits: Sequence[str] | None = None, min_objects: int = 2, max_objects: int = 5
) -> list[str]:
    """Captions, questions and answers of the scenes of ``SynthPano(n, seed)``: training text for
    the kit's tokenizer and language prior (no rendering, fast).

    ``splits=("train",)`` keeps the training panoramas only: scene ``i`` depends on ``(seed, i)``
    alone, so a corpus with the dataset's seed would otherwise contain its test answers.
    """
    pano = SynthPano(n, seed, min_objects=min_objects, max_objects=max_objects)
    texts: list[str] = [CAPTION_QUERY]
    for i in range(n):
        if splits is not None and split_of(i, n) not in splits:
            continue
        sample = pano.text(i)
        texts.append(sample.caption)
        for query, answer in sample.qa:
            texts.extend((query, answer))
    return texts


def split_of(index: int, n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Split of sample ``index``: the first 80% train, then val, then test (at least one each when n >= 3)."""
    n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
    n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
    n_train = n - n_val - n_test
    return "train" if index < n_train else "val" if index < n_train + n_val else "test"


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _text_rows(sample: SynthSample) -> list[tuple[str, str, str, bool]]:
    """(query, answer, question type, needs the seam) of the caption and each QA pair."""
    pairs = [(CAPTION_QUERY, sample.caption), *sample.qa]
    return [(q, a, question_type(q), needs_seam(sample.scene, q, a)) for q, a in pairs]


def _jsonl_record(sample: SynthSample, image_rel: str, width: int, height: int) -> dict:
    objects = []
    for obj, box in zip(sample.scene.objects, sample.bboxes or []):
        if box is None:  # no visible pixel at this resolution: no box to give
            continue
        entry = {"bbox_2d": box, "desc": f"{obj.size} {obj.name}", "direction": obj.direction}
        objects.append({**entry, **{k: v for k, v in obj.to_dict().items() if k not in ("spin_deg",)}})
    return {
        "images": [image_rel],
        "width": width,
        "height": height,
        "summary": sample.caption,
        "objects": objects,
        "qa": [{"query": q, "answer": a, "type": t, "seam": s} for q, a, t, s in _text_rows(sample)[1:]],
    }


def _render_files(pano: SynthPano, index: int) -> tuple[bytes, list[list[str]], str]:
    """Panorama ``index`` as (PNG bytes, its CSV rows, its JSONL line): the per-process unit of work."""
    sample = pano[index]
    rel = f"images/{index:05d}.png"
    rows = [[rel, q, a, t, "1" if s else "0"] for q, a, t, s in _text_rows(sample)]
    line = json.dumps(_jsonl_record(sample, rel, pano.width, pano.height), sort_keys=True)
    return _png_bytes(sample.image), rows, line


def _default_workers(n: int) -> int:
    # Forking pays off only for a sizeable dataset; the output never depends on it.
    if n < 64 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def write_synth_dataset(
    out: str | Path,
    n: int,
    seed: int = 0,
    width: int = 1024,
    height: int = 512,
    min_objects: int = 2,
    max_objects: int = 5,
    workers: int | None = None,
) -> dict:
    """Write ``images/*.png``, ``{train,val,test}.csv`` (url, query, annotation, type, seam: the
    question type, ``caption`` for the caption row, and ``1``/``0`` for whether it needs the seam,
    :func:`cora.data.synth.language.needs_seam`), ``{split}.jsonl`` (the JSONL dataset format, with
    ``bbox_2d`` per object and ``type``/``seam`` per qa entry), ``{split}_images.csv`` (image-only,
    stage 1) and ``synth.json`` (format version, parameters and counts). Returns that summary.

    ``workers`` processes render in parallel (default: the CPU count for n >= 64); the bytes
    written are the same for any number of workers.
    """
    out = Path(out)
    pano = SynthPano(n, seed, width, height, min_objects, max_objects)
    workers = _default_workers(n) if workers is None else max(1, workers)
    t0 = time.perf_counter()
    rows: dict[str, list[list[str]]] = {s: [] for s in SPLITS}
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    render = functools.partial(_render_files, pano)
    with contextlib.ExitStack() as stack:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")))
            results = pool.map(render, range(n), chunksize=max(1, n // (4 * workers)))
        else:
            results = map(render, range(n))
        for i, (png, csv_rows, line) in enumerate(results):
            with atomic_open(out / f"images/{i:05d}.png", "wb") as handle:
                handle.write(png)
            split = split_of(i, n)
            rows[split].extend(csv_rows)
            lines[split].append(line)
    counts = {}
    for split in SPLITS:
        atomic_write_text(out / f"{split}.csv", _csv_text(CSV_HEADER, rows[split]))
        atomic_write_text(out / f"{split}.jsonl", "".join(line + "\n" for line in lines[split]))
        images = sorted({r[0] for r in rows[split]})
        atomic_write_text(out / f"{split}_images.csv", _csv_text(["url"], [[im] for im in images]))
        counts[split] = {"panoramas": len(images), "rows": len(rows[split])}
    summary = {
        "generator": "SynthPano",
        "format": FORMAT_VERSION,
        "n": n,
        "seed": seed,
        "width": width,
        "height": height,
        "min_objects": min_objects,
        "max_objects": max_objects,
        "splits": counts,
    }
    atomic_write_json(out / "synth.json", summary)
    logger.info(
        "SynthPano: %d panoramas %dx%d in %.1fs (%d processes) -> %s",
        n,
        width,
        height,
        time.perf_counter() - t0,
        workers,
        out,
    )
    return summary


def ensure_synth_dataset(
    out: str | Path,
    n: int,
    seed: int = 0,
    width: int = 512,
    height: int = 256,
    min_objects: int = 2,
    max_objects: int = 5,
) -> dict:
    """Like :func:`write_synth_dataset`, but reuse ``out`` when it already holds exactly this
    dataset (same format version and parameters in ``synth.json``, and every file present)."""
    out = Path(out)
    wanted = {
        "generator": "SynthPano",
        "format": FORMAT_VERSION,
        "n": n,
        "seed": seed,
        "width": width,
        "height": height,
        "min_objects": min_objects,
        "max_objects": max_objects,
    }
    try:
        summary = json.loads((out / "synth.json").read_text())
    except (OSError, ValueError):
        summary = None
    files = [f"{s}{ext}" for s in SPLITS for ext in (".csv", ".jsonl", "_images.csv")]
    files += [f"images/{i:05d}.png" for i in range(n)]
    if summary and {k: summary.get(k) for k in wanted} == wanted and all((out / f).is_file() for f in files):
        logger.info("SynthPano: %s is up to date", out)
        return summary
    return write_synth_dataset(out, n, seed, width, height, min_objects, max_objects)
