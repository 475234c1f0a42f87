"""Left-right mirroring of caption text (for mirrored motion copies)."""
from __future__ import annotations

import re

_MIRROR_WORDS: dict[str, str] = {
    "left": "right", "right": "left",
    "lefts": "rights", "rights": "lefts",
    "leftward": "rightward", "rightward": "leftward",
    "leftwards": "rightwards", "rightwards": "leftwards",
    "lefthand": "righthand", "righthand": "lefthand",
    "lefthanded": "righthanded", "righthanded": "lefthanded",
    "leftmost": "rightmost", "rightmost": "leftmost",
    "lefty": "righty", "righty": "lefty",
    "clockwise": "counterclockwise", "counterclockwise": "clockwise",
    "anticlockwise": "clockwise",
}
# Hyphenated spellings that are one direction word (not mirrored part by part).
_MIRROR_COMPOUNDS: dict[str, str] = {
    "counter-clockwise": "clockwise",
    "anti-clockwise": "clockwise",
}
# ... and spelled as two words ("counter clockwise"), which must not become "counter counterclockwise".
_SPACED_COMPOUND_RE = re.compile(r"\b(?:counter|anti)\s+clockwise\b", re.IGNORECASE)
_WORD_RE = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")
# "all right" is an idiom, not a direction.
_ALL_BEFORE_RE = re.compile(r"\ball\s+$", re.IGNORECASE)


def _match_case(source: str, word: str) -> str:
    """``word`` written in the capitalisation of ``source`` (UPPER, Title, lower)."""
    if len(source) > 1 and source.isupper():
        return word.upper()
    if source[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _mirror_part(part: str) -> str:
    """One hyphen-free word, mirrored if it is a direction word."""
    target = _MIRROR_WORDS.get(part.lower())
    return part if target is None else _match_case(part, target)


def _mirror_token(match: re.Match[str]) -> str:
    """re.sub callback: mirror one (possibly hyphenated) word."""
    token = match.group(0)
    compound = _MIRROR_COMPOUNDS.get(token.lower())
    if compound is not None:
        return _match_case(token, compound)
    if token.lower() == "right" and _ALL_BEFORE_RE.search(match.string[: match.start()]):
        return token
    return "-".join(_mirror_part(p) for p in token.split("-"))


def mirror_caption(text: str) -> str:
    """Left-right mirror of a caption, for mirrored copies of a motion.

    Whole words only, case preserved: left<->right, leftward(s)<->rightward(s),
    lefthand(ed)<->righthand(ed) (also hyphenated, e.g. "left-handed"),
    clockwise<->counterclockwise; "counter-clockwise", "counter clockwise",
    "anticlockwise" and "anti-clockwise" become "clockwise".  Words such as "leftover", "bright",
    "copyright", "alright" and the idiom "all right" are left alone.
    """
    pieces = _SPACED_COMPOUND_RE.split(text)
    out = [_WORD_RE.sub(_mirror_token, pieces[0])]
    for compound, rest in zip(_SPACED_COMPOUND_RE.findall(text), pieces[1:]):
        out += [_match_case(compound, "clockwise"), _WORD_RE.sub(_mirror_token, rest)]
    return "".join(out)
