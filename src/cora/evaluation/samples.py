"""Evaluation samples: one per (panorama, query) with all its references (COCO-style grouping).

Test files are read by :mod:`cora.data.readers` (CSV or JSONL, ARCHITECTURE.md "Data", the same bad-row
policy as training data); this module groups them and keeps the image reference as the
dataset wrote it for the predictions file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cora.data.dataset import group_references
from cora.data.fetch import is_url, local_path
from cora.data.readers import read_records


@dataclass(frozen=True)
class EvalSample:
    """``url``: the predictions key (relative to the dataset file where possible); ``image``: a local path;
    ``question_type`` and ``seam``: from the dataset when it gives them (evaluation's subsets), else None."""

    url: str
    query: str
    references: tuple[str, ...] = ()
    image: str = ""
    question_type: str | None = None
    seam: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.url, self.query)


def _display(ref: str, base: Path) -> str:
    if is_url(ref):
        return ref
    try:
        return Path(ref).relative_to(base.resolve()).as_posix()
    except ValueError:
        return ref


def read_eval_samples(
    path: str | os.PathLike[str], policy: str = "error", cache_dir: str | os.PathLike[str] = ".cora/cache"
) -> list[EvalSample]:
    """The grouped samples of a test CSV/JSONL; URL images are fetched into ``cache_dir`` (once)."""
    path = Path(path)
    records, _ = read_records(path, policy=policy)
    samples = []
    for rec, refs in group_references(records):
        image = rec.image
        samples.append(
            EvalSample(
                _display(image, path.parent),
                rec.query or "",
                tuple(refs),
                str(local_path(image, cache_dir)),
                question_type=rec.question_type,
                seam=rec.seam,
            )
        )
    return samples
