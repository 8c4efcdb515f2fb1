"""``cora data validate``: what a dataset file holds and what is wrong with it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cora.data.fetch import local_path
from cora.data.readers import read_records
from cora.data.records import BadRow, BadRowLog, DataError
from cora.processors.image_io import ImageError, load_image


@dataclass
class ValidationReport:
    file: str
    records: int = 0
    images: int = 0
    readable: int = 0
    sizes: Counter = field(default_factory=Counter)  # "2048x1024" -> images
    aspects: Counter = field(default_factory=Counter)  # "2.00" -> images
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_images: list[str] = field(default_factory=list)  # "path: reason"
    fatal: str | None = None  # a file-level problem (missing file/column)

    @property
    def ok(self) -> bool:
        return self.fatal is None and not self.bad_rows and not self.bad_images


def validate_file(path: str | Path, cache_dir: str | Path = ".cora/cache") -> ValidationReport:
    """Read every row (skipping and recording bad ones) and decode every distinct image once."""
    report = ValidationReport(str(path))
    log = BadRowLog("skip")
    try:
        records, _ = read_records(path, log=log, image_only=_looks_image_only(path))
    except DataError as exc:
        report.fatal, report.bad_rows = str(exc), log.rows
        return report
    images = list(dict.fromkeys(img for rec in records for img in rec.images))
    report.images = len(images)
    failures: dict[str, str] = {}
    for ref in images:
        try:
            pixels = load_image(local_path(ref, cache_dir))
        except (DataError, ImageError) as exc:
            failures[ref] = str(exc)  # names the file or URL
            continue
        height, width = pixels.shape[:2]
        report.readable += 1
        report.sizes[f"{width}x{height}"] += 1
        report.aspects[f"{width / height:.2f}"] += 1
    report.bad_images = list(failures.values())
    # A row whose image cannot be decoded or fetched is as unusable as one whose image is missing: it is a
    # bad row with its own line, counted once, and not an example.
    for rec in records:
        reason = next((failures[img] for img in rec.images if img in failures), None)
        if reason is not None:
            log.rows.append(BadRow(rec.source, rec.line, f"unreadable image: {reason}"))
    report.records = sum(1 for rec in records if not any(img in failures for img in rec.images))
    report.bad_rows = sorted(log.rows, key=lambda b: (b.file, b.line))
    return report


def _looks_image_only(path: str | Path) -> bool:
    """A CSV with no text columns is an image-only (stage 1) file."""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        header = {h.strip().lower() for h in handle.readline().split(",")}
    return not header & {"query", "instruction", "annotation", "response"}


def format_report(report: ValidationReport) -> str:
    lines = [f"{report.file}"]
    if report.fatal:
        lines.append(f"  ERROR: {report.fatal}")
    lines.append(f"  examples: {report.records} usable; bad rows: {len(report.bad_rows)}")
    lines.append(f"  images: {report.images} referenced, {report.readable} readable, {len(report.bad_images)} bad")
    if report.sizes:
        lines.append("  sizes: " + ", ".join(f"{k} ({v})" for k, v in report.sizes.most_common(10)))
        lines.append("  aspect ratios: " + ", ".join(f"{k}:1 ({v})" for k, v in report.aspects.most_common(10)))
        if any(k != "2.00" for k in report.aspects):
            lines.append("  note: ERP panoramas are 2:1; other aspect ratios are resized with distortion")
    for bad in report.bad_rows[:50]:
        lines.append(f"  bad row {bad}")
    for bad in report.bad_images[:50]:
        lines.append(f"  bad image {bad}")
    hidden = max(0, len(report.bad_rows) - 50) + max(0, len(report.bad_images) - 50)
    if hidden:
        lines.append(f"  ... and {hidden} more")
    lines.append("  OK" if report.ok else "  PROBLEMS FOUND")
    return "\n".join(lines)
