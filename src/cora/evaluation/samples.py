"""Evaluation samples: one per (url, query) with all its references (COCO-style grouping)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# SPEC §6: url/query/annotation, also accepted under these names.
ALIASES = {"url": ("url", "image"), "query": ("query", "instruction"), "annotation": ("annotation", "response")}


class SamplesError(ValueError):
    """A test CSV that cannot be read: names the file, row and field."""


@dataclass(frozen=True)
class EvalSample:
    """``url`` as written in the CSV (the predictions key); ``image`` resolved for loading."""

    url: str
    query: str
    references: tuple[str, ...] = ()
    image: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.url, self.query)


def _resolve(url: str, base: Path | None) -> str:
    if url.startswith(("http://", "https://")) or base is None or Path(url).is_absolute():
        return url
    return str(base / url)


def group_samples(rows: Iterable[Mapping[str, str]], base_dir: str | os.PathLike[str] | None = None,
                  source: str = "<rows>") -> list[EvalSample]:
    """Group rows (``url``, ``query``, optional ``annotation``; or their aliases) by (url, query)."""
    base = Path(base_dir) if base_dir is not None else None
    order: list[tuple[str, str]] = []
    refs: dict[tuple[str, str], list[str]] = {}
    for n, row in enumerate(rows, start=2):
        values = {}
        for field, names in ALIASES.items():
            value = next((row[k] for k in names if row.get(k) is not None), None)
            if value is None and field != "annotation":
                raise SamplesError(f"{source}: row {n}: field {field!r} (or {names[1]!r}) is missing")
            values[field] = (value or "").strip()
        if not values["url"]:
            raise SamplesError(f"{source}: row {n}: field 'url' is empty")
        key = (values["url"], values["query"])
        if key not in refs:
            order.append(key)
            refs[key] = []
        if values["annotation"]:
            refs[key].append(values["annotation"])
    return [EvalSample(u, q, tuple(refs[(u, q)]), _resolve(u, base)) for u, q in order]


def read_test_csv(path: str | os.PathLike[str]) -> list[EvalSample]:
    """A test CSV (SPEC §6) as grouped samples; image paths relative to the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"test CSV not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for field, names in ALIASES.items():
            if field != "annotation" and not any(n in header for n in names):
                raise SamplesError(f"{path}: no {field!r} column (or {names[1]!r}); columns are {header}")
        return group_samples(reader, base_dir=path.parent, source=str(path))
