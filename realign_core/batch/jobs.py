"""The jobs CSV of ``realign batch``: read, check, and turn rows into the server's generate requests.

One row = one prompt with its settings; ``samples`` K gives K motions with seeds
``seed .. seed+K-1`` (as a ``generate`` request of the server).  Columns (header
required, order free, names case-insensitive; only ``prompt`` is required):

=============  ===============================================================
prompt         the text (1..500 characters)
seconds        duration, 1 s .. the model's maximum (default 6)
seed           integer 0 .. 2**31-1 (default: the row number, 1-based)
samples        motions of this row, 1..16 (default 1)
strength       ReAlign guidance strength (default: the model's calibrated one)
mu, eta        text-to-motion / motion-to-motion reward weights (model defaults)
cfg            classifier-free guidance scale (default: the generator's)
sampler        ddim, ddpm, diffusers-ddim, dpmsolver++, unipc (default ddim)
steps          sampler steps (default 50)
name           file-name stem: letters, digits, ``.``, ``_``, ``-`` (default
               ``row0001``...); unique within the file
armature       target armature object for *Import batch results* (optional)
start_frame    first frame of the take in Blender (optional, default 1)
=============  ===============================================================

Every problem is a :class:`JobsError` naming file, line, row and column.  Ranges are
the server's (``server.protocol.parse_generate``): checked once against the
protocol's own limits when the file is read (before any model loads) and again,
with the model's frame/step maxima and its defaults, by :func:`to_requests`.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.protocol import Defaults, GenerateRequest, Limits, ProtocolError, parse_generate

NUMBER_FIELDS = ("seconds", "strength", "mu", "eta", "cfg", "start_frame")
INT_FIELDS = ("seed", "samples", "steps")
TEXT_FIELDS = ("prompt", "sampler", "name", "armature")
COLUMNS = ("prompt", "seconds", "seed", "samples", "strength", "mu", "eta", "cfg", "sampler", "steps", "name",
           "armature", "start_frame")
GUIDANCE_FIELDS = ("strength", "mu", "eta", "cfg")
DEFAULT_SECONDS = 6.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_ROWS = 100_000


class JobsError(ValueError):
    """A bad jobs file: ``path``, ``line`` (1-based, header = 1), ``row`` (1-based data row), ``field``."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, row: int | None = None,
                 field_name: str | None = None) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if row is not None:
            where += f" (row {row})"
        if field_name:
            where += f", column '{field_name}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.row, self.field = str(path), line, row, field_name


@dataclass(frozen=True)
class JobRow:
    """One checked row; ``None`` = left empty (the model's default is used)."""

    row: int                     # 1-based data row
    line: int                    # line in the file (the header is line 1)
    prompt: str
    name: str
    seconds: float = DEFAULT_SECONDS
    seed: int = 0
    samples: int = 1
    sampler: str | None = None
    steps: int | None = None
    strength: float | None = None
    mu: float | None = None
    eta: float | None = None
    cfg: float | None = None
    armature: str = ""
    start_frame: float = 1.0

    def request_object(self) -> dict[str, Any]:
        """The row as a protocol ``generate`` object (only the fields it sets)."""
        obj: dict[str, Any] = {"id": self.row, "op": "generate", "prompt": self.prompt, "seconds": self.seconds,
                               "seed": self.seed, "samples": self.samples}
        if self.sampler is not None:
            obj["sampler"] = self.sampler
        if self.steps is not None:
            obj["steps"] = self.steps
        guidance = {k: getattr(self, k) for k in GUIDANCE_FIELDS if getattr(self, k) is not None}
        if guidance:
            obj["guidance"] = guidance
        return obj

    def motion_names(self) -> list[str]:
        """File stems of this row's motions: ``name`` for one sample, ``name_s{k}`` for several."""
        return [self.name] if self.samples == 1 else [f"{self.name}_s{k}" for k in range(self.samples)]


def read_jobs(path: str | Path, limits: Limits | None = None) -> list[JobRow]:
    """Read and check a jobs CSV -> its rows (raises :class:`JobsError`, the first problem found)."""
    path = Path(path)
    if not path.is_file():
        raise JobsError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobsError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader, None)
        if header is None:
            raise JobsError(path, "the file is empty; it needs a header line with at least 'prompt'", line=1)
        columns = _check_header(path, header)
        rows = [_parse_row(path, columns, values, reader.line_num, n)
                for n, values in enumerate(_data_lines(reader), start=1)]
    except csv.Error as exc:
        raise JobsError(path, f"CSV error: {exc}", line=reader.line_num) from None
    if not rows:
        raise JobsError(path, "no data rows after the header")
    if len(rows) > MAX_ROWS:
        raise JobsError(path, f"{len(rows)} rows; at most {MAX_ROWS} per file (split it)")
    _check_names(path, rows)
    for r in rows:
        to_request(path, r, limits or Limits(), Defaults())
    return rows


def _data_lines(reader):
    """Non-blank data rows of a csv.reader."""
    for values in reader:
        if any(v.strip() for v in values):
            yield values


def _check_header(path: Path, header: list[str]) -> list[str]:
    columns = [h.strip().lower() for h in header]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise JobsError(path, f"unknown column {unknown[0]!r}; allowed: {', '.join(COLUMNS)}", line=1)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise JobsError(path, f"column {dupes[0]!r} appears twice", line=1)
    if "prompt" not in columns:
        raise JobsError(path, f"the header has no 'prompt' column (found: {', '.join(columns)})", line=1)
    return columns


def _parse_row(path: Path, columns: list[str], values: list[str], line: int, row: int) -> JobRow:
    if len(values) != len(columns):
        raise JobsError(path, f"{len(values)} values for {len(columns)} columns (quote fields that contain "
                              f"commas)", line, row)
    raw = {c: v.strip() for c, v in zip(columns, values)}
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if value == "":
            continue
        if name in INT_FIELDS:
            kwargs[name] = _as_int(path, value, line, row, name)
        elif name in NUMBER_FIELDS:
            kwargs[name] = _as_float(path, value, line, row, name)
        else:
            kwargs[name] = value
    if not kwargs.get("prompt"):
        raise JobsError(path, "the prompt is empty", line, row, "prompt")
    name = kwargs.pop("name", f"row{row:04d}")
    if not NAME_RE.match(name):
        raise JobsError(path, f"{name!r} is not a valid name (letters, digits, '.', '_', '-'; at most 100 "
                              f"characters, not starting with '.', '_' or '-')", line, row, "name")
    kwargs.setdefault("seed", row)
    return JobRow(row=row, line=line, name=name, **kwargs)


def _as_int(path: Path, value: str, line: int, row: int, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise JobsError(path, f"must be a whole number, got {value!r}", line, row, name) from None


def _as_float(path: Path, value: str, line: int, row: int, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number):
        raise JobsError(path, f"must be a finite number, got {value!r}", line, row, name)
    return number


def _check_names(path: Path, rows: list[JobRow]) -> None:
    """Motion file names must be unique (``name`` and ``name_s{k}`` of different rows must not clash)."""
    seen: dict[str, JobRow] = {}
    for r in rows:
        for stem in r.motion_names():
            other = seen.get(stem.lower())
            if other is not None:
                raise JobsError(path, f"motion name {stem!r} is also made by row {other.row} (line {other.line}); "
                                      f"names must be unique", r.line, r.row, "name")
            seen[stem.lower()] = r


def to_request(path: str | Path, row: JobRow, limits: Limits, defaults: Defaults) -> GenerateRequest:
    """A row -> the server's validated ``GenerateRequest`` (range errors become :class:`JobsError`)."""
    try:
        return parse_generate(row.request_object(), limits, defaults)
    except ProtocolError as exc:
        column = (exc.field or "").removeprefix("guidance.") or None
        message = exc.message.replace("field 'guidance.", "field '").replace("'prompts', 'samples'", "'samples'")
        raise JobsError(path, message, row.line, row.row, column) from None


def to_requests(path: str | Path, rows: list[JobRow], limits: Limits, defaults: Defaults) -> list[GenerateRequest]:
    """Every row as a request with the model's limits and defaults."""
    return [to_request(path, r, limits, defaults) for r in rows]
