"""The JSONL dataset format (docs/ARCHITECTURE.md, "Data") and the ``norm1000`` geometry text.

One JSON object per line::

    {"images": ["pano.jpg", ...], "width": 2048, "height": 1024, "summary": "...",
     "objects": [{"bbox_2d": [x1, y1, x2, y2], "desc": "..."},
                 {"quad": [x1, y1, ..., x4, y4], "desc": "..."},
                 {"line": [x1, y1, x2, y2, ...], "desc": "..."}],
     "qa": [{"query": "...", "answer": "...", "type": "...", "seam": true}]}

Image paths are relative to the JSONL file; geometry is in pixels of the first image
(``x1 > x2`` in a ``bbox_2d`` means the box wraps across the ERP seam). Text turns are
made from the row according to ``tasks``: ``summary`` (the caption query -> summary),
``qa`` (each pair), ``grounding`` ("Locate the {desc}." -> the object's geometry in
0-1000 integers, ``{"bbox_2d": [...]}``). Each turn has a question type and a seam flag (whether
it needs the ±180° seam; None when unknown): ``qa`` entries give theirs as optional ``type`` and
``seam``, summaries are ``caption`` (seam unknown), grounding turns are ``grounding``, needing the
seam when the ``bbox_2d`` wraps.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path

from cora.data.fetch import image_size, is_url
from cora.data.records import CAPTION_QUERY, BadRowLog, DataError, Record, parse_flag, undecodable_byte

JSONL_TASKS = ("summary", "qa", "grounding")
GEOMETRY_KEYS = ("bbox_2d", "quad", "line")


def norm1000(value: float, extent: int) -> int:
    """A pixel coordinate as an integer in 0..1000 of the image extent."""
    return int(min(1000, max(0, round(float(value) / extent * 1000))))


def norm1000_points(coords: Sequence[float], width: int, height: int) -> list[int]:
    """Alternating x, y pixel coordinates (bbox_2d, quad, line) to 0..1000 integers."""
    return [norm1000(v, width if i % 2 == 0 else height) for i, v in enumerate(coords)]


def geometry_text(obj: dict, width: int, height: int) -> str:
    """``{"bbox_2d": [120, 340, 180, 420]}``: the object's geometry in norm1000."""
    key = next(k for k in GEOMETRY_KEYS if k in obj)
    return json.dumps({key: norm1000_points(obj[key], width, height)})


def _geometry_problem(obj: object, index: int) -> str | None:
    if not isinstance(obj, dict):
        return f"objects[{index}]: expected an object, got {type(obj).__name__}"
    keys = [k for k in GEOMETRY_KEYS if k in obj]
    if len(keys) != 1:
        return f"objects[{index}]: needs exactly one of {list(GEOMETRY_KEYS)}, has {keys or 'none'}"
    coords = obj[keys[0]]
    if not isinstance(coords, list) or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in coords):
        return f"objects[{index}]: {keys[0]} must be a list of numbers"
    n = len(coords)
    ok = n == 4 if keys[0] == "bbox_2d" else n == 8 if keys[0] == "quad" else n >= 4 and n % 2 == 0
    if not ok:
        want = {"bbox_2d": "4", "quad": "8", "line": "an even number >= 4 of"}[keys[0]]
        return f"objects[{index}]: {keys[0]} needs {want} numbers, got {n}"
    if "desc" in obj and not isinstance(obj["desc"], str):
        return f"objects[{index}]: desc must be a string"
    return None


def wraps_seam(obj: dict) -> bool | None:
    """Whether an object's ``bbox_2d`` wraps across the ERP seam (``x1 > x2``); None for other geometry."""
    box = obj.get("bbox_2d")
    return box[0] > box[2] if isinstance(box, list) and len(box) == 4 else None


# (query, answer, question type, seam) of one text turn of a row.
Turn = tuple[str, str, str | None, bool | None]


def _turns(row: dict, tasks: Sequence[str], width: int | None, height: int | None) -> list[Turn]:
    turns: list[Turn] = []
    if "summary" in tasks and str(row.get("summary") or "").strip():
        turns.append((CAPTION_QUERY, row["summary"].strip(), "caption", None))
    if "qa" in tasks:
        for pair in row.get("qa") or []:
            kind = str(pair.get("type") or "").strip() or None
            query, answer = str(pair["query"]).strip(), str(pair["answer"]).strip()
            turns.append((query, answer, kind, parse_flag(pair.get("seam"))))
    if "grounding" in tasks and width and height:
        for obj in row.get("objects") or []:
            if str(obj.get("desc") or "").strip():
                query = f"Locate the {obj['desc'].strip()}."
                turns.append((query, geometry_text(obj, width, height), "grounding", wraps_seam(obj)))
    return turns


def _qa_problem(qa: object) -> str | None:
    if not isinstance(qa, list) or not all(
        isinstance(p, dict) and str(p.get("query") or "").strip() and str(p.get("answer") or "").strip() for p in qa
    ):
        return "qa must be a list of {query, answer} with non-empty texts"
    for i, pair in enumerate(qa):
        if pair.get("type") is not None and not isinstance(pair["type"], str):
            return f"bad type: qa[{i}].type must be a string, got {pair['type']!r}"
        try:
            parse_flag(pair.get("seam"))
        except ValueError as exc:
            return f"bad seam: qa[{i}].seam {exc}"
    return None


def _row_problem(row: object) -> str | None:
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    images = row.get("images", [row["image"]] if isinstance(row.get("image"), str) else None)
    if not isinstance(images, list) or not images or not all(isinstance(i, str) and i.strip() for i in images):
        return "missing 'images' (a non-empty list of paths or URLs)"
    for key in ("width", "height"):
        if key in row and (not isinstance(row[key], int) or isinstance(row[key], bool) or row[key] <= 0):
            return f"{key} must be a positive integer, got {row[key]!r}"
    objects = row.get("objects", [])
    if not isinstance(objects, list):
        return "objects must be a list"
    for i, obj in enumerate(objects):
        problem = _geometry_problem(obj, i)
        if problem:
            return problem
    return _qa_problem(row.get("qa", []))


def read_jsonl(
    path: Path,
    log: BadRowLog,
    image_only: bool,
    tasks: Sequence[str],
    resolve: Callable[[str, Path], str],
    check: Callable[[str], str | None],
) -> list[Record]:
    unknown = set(tasks) - set(JSONL_TASKS)
    if unknown:
        raise ValueError(f"unknown JSONL task(s) {sorted(unknown)}; valid: {list(JSONL_TASKS)}")
    records: list[Record] = []
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            if (byte := undecodable_byte(text)) is not None:
                log.report(str(path), line_no, f"not UTF-8 text (byte {byte:#04x})")
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                log.report(str(path), line_no, f"malformed JSON: {exc.msg} at column {exc.colno}")
                continue
            problem = _row_problem(row)
            if problem:
                log.report(str(path), line_no, problem)
                continue
            images = tuple(resolve(i, path.parent) for i in row.get("images") or [row["image"]])
            problem = next((p for p in map(check, images) if p), None)
            if problem:
                log.report(str(path), line_no, problem)
                continue
            width, height = row.get("width"), row.get("height")
            if (width is None or height is None) and row.get("objects") and not is_url(images[0]):
                try:
                    width, height = image_size(images[0])  # geometry needs the pixel extent
                except DataError as exc:
                    log.report(str(path), line_no, str(exc))
                    continue
            if image_only:
                records.append(Record(images, None, None, str(path), line_no, width=width, height=height))
                continue
            turns = _turns(row, tasks, width, height)
            if not turns:
                log.report(
                    str(path),
                    line_no,
                    f"no text: the row gives no turn for tasks {list(tasks)} "
                    "(needs summary, qa, or objects with desc and a known width/height)",
                )
                continue
            objects = tuple(row.get("objects") or ())
            records.extend(
                Record(images, q, a, str(path), line_no, objects, width, height, question_type=kind, seam=seam)
                for q, a, kind, seam in turns
            )
    return records
