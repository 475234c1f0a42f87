"""HumanML3D texts/ lines: "caption#word/POS ...#start#end"."""
from __future__ import annotations

import math
from dataclasses import dataclass

from realign_core.data.captions.tokens import pos_tokens


@dataclass(frozen=True)
class CaptionRecord:
    """One HumanML3D caption line.

    start, end: seconds relative to the clip; 0.0/0.0 means the whole clip.
    """

    caption: str
    tokens: str
    start: float = 0.0
    end: float = 0.0

    @property
    def whole_clip(self) -> bool:
        """True when the caption describes the whole clip (start == end == 0)."""
        return self.start == 0.0 and self.end == 0.0


_LINE_FIELDS = 4


def _format_seconds(value: float) -> str:
    """Seconds as HumanML3D writes them: "0.0", "1.5", "2.35" (at most ms)."""
    text = f"{float(value):.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _clean_caption(text: str) -> str:
    """One-line caption: '#' and line breaks removed, spaces collapsed."""
    return " ".join(text.replace("#", " ").split())


def caption_line(text: str, start: float = 0.0, end: float = 0.0) -> str:
    """One HumanML3D ``texts/`` line ``caption#tokens#start#end`` (no newline).

    start, end: seconds relative to the clip; 0.0#0.0 means the whole clip,
    otherwise 0 <= start < end is required.
    """
    caption = _clean_caption(text)
    if not caption:
        raise ValueError(f"empty caption: {text!r}")
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < 0:
        raise ValueError(f"bad segment {start}..{end} for caption {text!r}")
    if (start, end) != (0.0, 0.0) and end <= start:
        raise ValueError(f"segment end {end} must follow start {start} for caption {text!r}")
    return "#".join((caption, pos_tokens(caption), _format_seconds(start), _format_seconds(end)))


def _parse_seconds(field: str, line: str) -> float:
    """A start/end field; NaN reads as 0.0 like the HumanML3D loader does."""
    try:
        value = float(field)
    except ValueError:
        raise ValueError(f"malformed caption line (time {field!r} is not a number): {line!r}") from None
    if math.isnan(value):
        return 0.0
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"malformed caption line (time {field!r} out of range): {line!r}")
    return value


def parse_caption_line(line: str) -> CaptionRecord:
    """Parse ``caption#tokens#start#end`` (ours or official HumanML3D lines).

    Splits from the right, so a caption holding a stray '#' survives.  Raises
    ValueError naming the line when fields are missing, the caption is empty or
    a time is not a non-negative number.
    """
    stripped = line.rstrip("\r\n")
    fields = stripped.rsplit("#", _LINE_FIELDS - 1)
    if len(fields) != _LINE_FIELDS:
        raise ValueError(f"malformed caption line (expected caption#tokens#start#end): {line!r}")
    caption, tokens, start, end = fields
    if not caption.strip():
        raise ValueError(f"malformed caption line (empty caption): {line!r}")
    return CaptionRecord(caption.strip(), tokens.strip(), _parse_seconds(start, line),
                         _parse_seconds(end, line))
