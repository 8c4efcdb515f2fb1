"""``cora data fetch``: materialise a CSV/TSV dataset whose image column holds http(s) URLs.

Hand-written because no dataset library does this job: the Hugging Face ``datasets`` and hub
clients download files of a repository, not an arbitrary list of image URLs, and bulk image
downloaders (img2dataset and the like) resize and re-encode into shards and keep whatever the
server answered. Here every distinct URL is downloaded once, concurrently (a bounded thread
pool), with bounded retries (exponential backoff with jitter; ``Retry-After`` honoured on 429/503),
a per-request timeout and a size limit checked while reading; a file is kept only once it decodes
as an image (:func:`cora.processors.image_io.decode_image`), written atomically under
``DIR/images/`` with the name :func:`cora.data.fetch.cache_path` gives (a hash of the URL). A rerun
skips the images already there, so an interrupted run is finished by running it again.

Outputs: ``DIR/<name>.csv`` (the input with the image column pointing at the local files; rows
whose image failed are left out), ``DIR/fetch_failures.csv`` (url, lines, reason, detail).
"""

from __future__ import annotations

import csv
import logging
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import cora
from cora.data.fetch import cache_path, image_size, is_url
from cora.data.readers import IMAGE_COLUMNS, resolve_image
from cora.data.records import DataError, undecodable_byte
from cora.utils.http import retry_after_s
from cora.utils.io import atomic_open, remove_stale_temp_files

logger = logging.getLogger(__name__)

DEFAULT_WORKERS = 8
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BYTES = 64 * 2**20
FAILURES_NAME = "fetch_failures.csv"
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_CHUNK = 256 * 1024
# A temp file lives only while one image is written (the body is in memory by then); one this old
# was left by a killed run.
_STALE_TMP_S = 300.0


@dataclass(frozen=True)
class FetchPolicy:
    """How hard to try one URL. ``retries`` are extra attempts after the first; ``timeout_s`` bounds
    connecting and each wait for more bytes; ``max_wait_s`` caps a backoff or a ``Retry-After``."""

    retries: int = DEFAULT_RETRIES
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int = DEFAULT_MAX_BYTES
    backoff_s: float = 1.0
    max_wait_s: float = 120.0


@dataclass(frozen=True)
class FetchFailure:
    url: str
    lines: tuple[int, ...]  # lines of the input file whose rows use the URL
    reason: str  # a short category: "http 404", "timeout", "not an image", "too large", ...
    detail: str


@dataclass
class FetchReport:
    source: str
    csv_out: str
    failures_csv: str
    rows: int = 0  # data rows of the input
    rows_written: int = 0
    urls: int = 0  # distinct http(s) URLs
    local: int = 0  # rows with a local path, kept as they are
    fetched: int = 0
    present: int = 0  # already in DIR/images from an earlier run
    bytes_fetched: int = 0
    failures: list[FetchFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


class FetchError(Exception):
    """One URL's failure: a short reason (the report's category) and the detail."""

    def __init__(self, reason: str, detail: str, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
        self.retryable, self.retry_after = retryable, retry_after


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line where the row starts, cells)
    image_col: int


# ---------------------------------------------------------------- reading the table


def read_table(path: Path) -> Table:
    """The rows of a .csv/.tsv file and its image column (``url`` or ``image``, as the readers pick it).

    Undecodable bytes pass through (surrogateescape) so the rewritten file keeps them and
    ``cora data validate`` reports those rows as the reader does.
    """
    delimiter = _DELIMITERS.get(path.suffix.lower())
    if not path.is_file():
        raise DataError(f"{path}: dataset file not found")
    if delimiter is None:
        raise DataError(f"{path}: unknown format {path.suffix!r} (cora data fetch reads .csv or .tsv)")
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file (expected a header row)")
            rows, line = [], reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):  # blank lines are no rows (the readers skip them too)
                    rows.append((line, cells))
                line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: unreadable {path.suffix[1:].upper()} ({exc})") from exc
    return Table(header, rows, _image_column(path, header))


def _image_column(path: Path, header: list[str]) -> int:
    names = [h.strip().lower() for h in header]
    if any(undecodable_byte(h) is not None for h in names):
        raise DataError(f"{path}:1: the header row is not UTF-8 text")
    for name in IMAGE_COLUMNS:
        if name in names:
            return names.index(name)
    raise DataError(f"{path}: missing column 'url' or 'image'; the header has {names}")


def _image_cell(cells: list[str], col: int) -> str:
    return cells[col].strip() if col < len(cells) else ""


def url_lines(table: Table) -> dict[str, list[int]]:
    """Each distinct http(s) URL (in order of first use) with the lines of the rows using it."""
    lines: dict[str, list[int]] = {}
    for line, cells in table.rows:
        ref = _image_cell(cells, table.image_col)
        if is_url(ref):
            lines.setdefault(ref, []).append(line)
    return lines


# ---------------------------------------------------------------- one URL


def _status_failure(response: httpx.Response) -> FetchError:
    code = response.status_code
    wait = retry_after_s(response.headers) if code in _RETRY_AFTER_STATUSES else None
    phrase = response.reason_phrase or ""
    return FetchError(f"http {code}", f"{code} {phrase}".strip(), retryable=code in _RETRY_STATUSES, retry_after=wait)


def _read_body(response: httpx.Response, max_bytes: int, stop: threading.Event) -> bytes:
    """The body, refused as soon as it is announced or read past ``max_bytes`` (not after reading it all)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError("too large", f"Content-Length {int(declared)} bytes > limit {max_bytes}")
    chunks, size = [], 0
    for chunk in response.iter_bytes(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too large", f"more than {max_bytes} bytes")
        if stop.is_set():
            raise FetchError("interrupted", "the run was stopped")
        chunks.append(chunk)
    return b"".join(chunks)


def _attempt(client: httpx.Client, url: str, policy: FetchPolicy, stop: threading.Event) -> tuple[bytes, str]:
    """One GET: (body, Content-Type); any failure is a :class:`FetchError` saying whether another try may help."""
    try:
        with client.stream("GET", url) as response:
            if not response.is_success:
                raise _status_failure(response)
            return _read_body(response, policy.max_bytes, stop), response.headers.get("content-type", "")
    except httpx.TimeoutException as exc:
        raise FetchError("timeout", f"{type(exc).__name__} after {policy.timeout_s:g} s", retryable=True) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise FetchError("bad url", f"{type(exc).__name__}: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise FetchError("too many redirects", str(exc)) from exc
    except httpx.RequestError as exc:  # connection refused/reset, DNS, broken responses: often transient
        raise FetchError("connection error", f"{type(exc).__name__}: {exc}", retryable=True) from exc


def _wait_before_retry(failure: FetchError, attempt: int, policy: FetchPolicy) -> float:
    if failure.retry_after is not None:
        return min(failure.retry_after, policy.max_wait_s)
    # Exponential backoff with jitter, so workers that failed together do not retry in lockstep.
    return min(policy.backoff_s * 2**attempt, policy.max_wait_s) * random.uniform(0.5, 1.5)


def download(client: httpx.Client, url: str, policy: FetchPolicy, stop: threading.Event) -> tuple[bytes, str]:
    """(body, Content-Type) of ``url``, retrying transient failures up to ``policy.retries`` times.

    Raises :class:`FetchError`.
    """
    attempt = 0
    while True:
        try:
            return _attempt(client, url, policy, stop)
        except FetchError as failure:
            if not failure.retryable or attempt >= policy.retries:
                raise
            delay = _wait_before_retry(failure, attempt, policy)
            logger.debug("%s: %s; retry %d in %.1f s", url, failure, attempt + 1, delay)
            if stop.wait(delay):
                raise FetchError("interrupted", "the run was stopped") from failure
            attempt += 1


def _check_image(data: bytes, url: str, content_type: str) -> None:
    from cora.processors.image_io import decode_image

    try:
        # A JPEG decodes at 1/8 scale: libjpeg still reads (and checks) the whole stream, without holding a
        # full-size 8K panorama per worker in memory.
        decode_image(data, url, decode_min_width=1)
    except Exception as exc:  # decoders raise many types for bad bytes; any of them means "not an image"
        cause = exc.__cause__ or exc  # the decoder's own error, without the URL decode_image prefixes
        # (PIL's message names its in-memory buffer object: noise in a report)
        message = str(cause).split(" <_io.")[0]
        received = f"{content_type or 'no Content-Type'}, {len(data)} bytes"
        raise FetchError("not an image", f"{received}: {type(cause).__name__}: {message}") from exc


def _present(target: Path) -> bool:
    """A file an earlier run (or the user, by hand) put there whose header reads as an image.

    Our own files were decoded before the atomic rename, so the header check suffices; it is what makes a
    rerun cheap.
    """
    if not target.is_file():
        return False
    try:
        image_size(target)
    except DataError:
        return False
    return True


def fetch_one(client: httpx.Client, url: str, target: Path, policy: FetchPolicy, stop: threading.Event) -> int | None:
    """Bytes written for ``url`` at ``target``, or None when a good file is already there.

    Raises :class:`FetchError`.
    """
    if _present(target):
        return None
    data, content_type = download(client, url, policy, stop)
    _check_image(data, url, content_type)
    try:
        with atomic_open(target, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise FetchError("write error", f"{target}: {exc}") from exc
    return len(data)


# ---------------------------------------------------------------- all URLs


def _client(workers: int, timeout_s: float) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=True,
        limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        # Some image hosts refuse requests without a user agent of their own.
        headers={"User-Agent": f"cora-data-fetch/{cora.__version__} python-httpx/{httpx.__version__}"},
    )


class _Progress:
    """A log line every few seconds: a long download must not look hung."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total, self.every_s, self.done, self.last = total, every_s, 0, time.monotonic()

    def step(self, report: FetchReport) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            logger.info(
                "fetch: %d/%d URLs done (%d fetched, %d present, %d failed)",
                self.done,
                self.total,
                report.fetched,
                report.present,
                len(report.failures),
            )


def _record(report: FetchReport, url: str, lines: list[int], written: int | FetchError | None) -> None:
    if isinstance(written, FetchError):
        report.failures.append(FetchFailure(url, tuple(lines), written.reason, written.detail))
    elif written is None:
        report.present += 1
    else:
        report.fetched += 1
        report.bytes_fetched += written


def fetch_urls(
    urls: dict[str, list[int]], out_dir: Path, workers: int, policy: FetchPolicy, report: FetchReport
) -> None:
    """Fetch every URL into ``out_dir/images`` with ``workers`` threads, counting into ``report``.

    On an interrupt (Ctrl-C) the queued URLs are dropped and running ones stop at their next chunk or
    backoff, so the process exits promptly; the images already written stay for the rerun.
    """
    stop = threading.Event()
    progress = _Progress(len(urls))
    client = _client(workers, policy.timeout_s)

    def work(url: str) -> int | None:
        return fetch_one(client, url, cache_path(url, out_dir), policy, stop)

    try:
        for url, written in _in_threads(list(urls), workers, work, stop):
            _record(report, url, urls[url], written)
            progress.step(report)
    finally:
        stop.set()  # after an interrupt: no new downloads; running ones stop at their next chunk or backoff
        client.close()
    order = {url: i for i, url in enumerate(urls)}
    report.failures.sort(key=lambda f: order[f.url])


def _in_threads(
    items: list[str], workers: int, work: Callable[[str], int | None], stop: threading.Event
) -> Iterator[tuple[str, int | FetchError | None]]:
    """(item, ``work(item)`` or its :class:`FetchError`) for every item, in order of completion, from ``workers``
    daemon threads that take no new item once ``stop`` is set.

    Not a ThreadPoolExecutor: its threads are joined at exit, so a Ctrl-C would wait for every download in
    flight (up to a whole timeout); a daemon thread dies with the process, and an image it was writing is
    only a temp file (atomic write), removed by a later run.
    """
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    done: queue.Queue[tuple[str, int | BaseException | None]] = queue.Queue()

    def loop() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((item, work(item)))
            except BaseException as exc:  # handed to the main thread: a FetchError is counted, a bug re-raised
                done.put((item, exc))

    for _ in range(min(workers, len(items))):
        threading.Thread(target=loop, name="cora-fetch", daemon=True).start()
    for _ in items:
        item, result = done.get()
        if isinstance(result, BaseException) and not isinstance(result, FetchError):
            raise result
        yield item, result


# ---------------------------------------------------------------- outputs


def _local_ref(cell: str, source_dir: Path, out_dir: Path) -> str:
    """A local path of the input, written so that it resolves from ``out_dir``: an absolute path stays as
    it is, a relative one (relative to the input file, as the readers take it) is re-relativised."""
    if Path(cell).expanduser().is_absolute():
        return cell
    resolved = resolve_image(cell, source_dir)
    try:
        return Path(os.path.relpath(resolved, out_dir)).as_posix()
    except ValueError:  # another drive (Windows): no relative path exists
        return resolved


def rewrite_rows(table: Table, source_dir: Path, out_dir: Path, failed: set[str]) -> list[list[str]]:
    """The data rows for ``out_dir``: URLs -> ``images/<name>``, local paths re-based, failed URLs' rows dropped.

    Rows with no image cell at all pass through unchanged: the readers name them as bad rows.
    """
    out = []
    for _, cells in table.rows:
        ref = _image_cell(cells, table.image_col)
        if ref in failed:
            continue
        if ref:
            cells = list(cells)
            local = cache_path(ref, out_dir).relative_to(out_dir).as_posix() if is_url(ref) else None
            cells[table.image_col] = local or _local_ref(ref, source_dir, out_dir)
        out.append(cells)
    return out


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_failures(path: Path, failures: list[FetchFailure]) -> None:
    rows = [[f.url, " ".join(map(str, f.lines)), f.reason, f.detail] for f in failures]
    _write_csv(path, ["url", "lines", "reason", "detail"], rows)


def fetch_dataset(
    csv_path: str | Path,
    out_dir: str | Path,
    workers: int = DEFAULT_WORKERS,
    retries: int = DEFAULT_RETRIES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    backoff_s: float = 1.0,
) -> FetchReport:
    """Download the http(s) images of ``csv_path`` (.csv/.tsv) into ``out_dir/images`` and write
    ``out_dir/<name>.csv`` and ``out_dir/fetch_failures.csv``. Rerunning fetches only what is missing.

    Raises :class:`DataError` for an unusable input file (missing, unknown format, no image column).
    """
    if workers < 1 or retries < 0 or timeout_s <= 0 or max_bytes < 1:
        raise ValueError(
            f"need workers >= 1, retries >= 0, timeout_s > 0, max_bytes >= 1; got {workers}, "
            f"{retries}, {timeout_s}, {max_bytes}"
        )
    t0 = time.perf_counter()
    source, out = Path(csv_path), Path(out_dir).resolve()
    table = read_table(source)
    csv_out = out / f"{source.stem}.csv"
    if csv_out == source.resolve():
        raise DataError(f"{source}: --out {out_dir} would overwrite the input; choose another folder")
    report = FetchReport(str(source), str(csv_out), str(out / FAILURES_NAME), rows=len(table.rows))
    urls = url_lines(table)
    report.urls = len(urls)
    report.local = sum(1 for _, cells in table.rows if (ref := _image_cell(cells, table.image_col)) and not is_url(ref))
    remove_stale_temp_files(out / "images", _STALE_TMP_S)
    policy = FetchPolicy(retries=retries, timeout_s=timeout_s, max_bytes=max_bytes, backoff_s=backoff_s)
    fetch_urls(urls, out, workers, policy, report)
    rows = rewrite_rows(table, source.resolve().parent, out, {f.url for f in report.failures})
    _write_csv(csv_out, table.header, rows)
    write_failures(out / FAILURES_NAME, report.failures)
    report.rows_written, report.seconds = len(rows), time.perf_counter() - t0
    return report


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def format_fetch_report(report: FetchReport, limit: int = 5) -> str:
    """One screen: counts, failures by reason, the first few failed URLs and where the rest are."""
    lines = [
        f"{report.source} -> {report.csv_out}",
        f"  URLs: {report.urls} distinct in {report.rows} rows; rows with a local path kept: {report.local}",
        f"  fetched: {report.fetched} ({_size(report.bytes_fetched)}); already present: {report.present}",
    ]
    if report.failures:
        reasons = Counter(f.reason for f in report.failures)
        lines.append(
            f"  failed: {len(report.failures)} (" + ", ".join(f"{r}: {n}" for r, n in reasons.most_common()) + ")"
        )
        lines += [f"    {f.url}: {f.detail}" for f in report.failures[:limit]]
        more = len(report.failures) - limit
        lines.append(f"    ... and {more} more; all" if more > 0 else "    all")
        lines[-1] += f" listed in {report.failures_csv}"
    dropped = report.rows - report.rows_written
    lines.append(f"  rows written: {report.rows_written}" + (f" ({dropped} left out: image failed)" if dropped else ""))
    lines.append(
        f"  {'OK' if report.ok else 'INCOMPLETE: run the same command again to retry the failed URLs'}"
        f" ({report.seconds:.1f}s)"
    )
    return "\n".join(lines)
