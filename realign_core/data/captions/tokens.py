"""Rule-based part-of-speech tokens in HumanML3D's "word/POS" format."""
from __future__ import annotations

import re
from dataclasses import dataclass

from realign_core.data.captions.lexicon import (
    ADJ_OR_ADV,
    ADJ_SUFFIXES,
    ADJECTIVES,
    ADVERBS,
    CLOSED_CLASS,
    NOUN_FORMS,
    NUMBER_RE,
    NUMBER_WORDS,
    PARTICLES,
    POSSESSIVES,
    VERB_FORMS,
)


@dataclass(frozen=True)
class _Tok:
    """A tagged token: surface word, Universal POS tag and lemma."""

    word: str
    tag: str
    lemma: str


def _split_words(text: str) -> list[tuple[str, bool]]:
    """Lower-cased words with a flag for "capitalised, not sentence-initial".

    Hyphens inside words are removed ("counter-clockwise" -> "counterclockwise",
    as HumanML3D does), other punctuation separates words, "n't" becomes "not"
    and possessive "'s" is dropped.
    """
    text = re.sub(r"(?<=[A-Za-z])-(?=[A-Za-z])", "", text)
    text = re.sub(r"n[’']t\b", " not", text)
    text = re.sub(r"[’']s\b", "", text)
    words: list[tuple[str, bool]] = []
    for match in re.finditer(r"\d+(?:\.\d+)?|[A-Za-z0-9]+", text):
        raw = match.group(0)
        before = text[: match.start()].rstrip()
        initial = not before or before[-1] in ".!?"
        words.append((raw.lower(), raw[:1].isupper() and not initial))
    return words


def _can_start_np(word: str | None) -> bool:
    """Whether ``word`` can open a noun phrase (for particle/adjective choices)."""
    if word is None:
        return False
    if word in CLOSED_CLASS:
        return CLOSED_CLASS[word] in ("DET", "PRON")
    if word in NUMBER_WORDS or NUMBER_RE.match(word):
        return True
    return word in NOUN_FORMS or word in ADJECTIVES or word in ADJ_OR_ADV or (
        word not in VERB_FORMS and word not in ADVERBS and word not in PARTICLES)


def _is_nounish(word: str | None) -> bool:
    """Whether ``word`` can head a noun phrase right after a modifier."""
    if word is None or word in CLOSED_CLASS or word in ADVERBS or word in PARTICLES:
        return False
    if word in NOUN_FORMS or word in ADJECTIVES:
        return True
    return word not in VERB_FORMS and word not in ADJ_OR_ADV


def _tag_closed(word: str, nxt: str | None, prev: _Tok | None) -> str:
    """Tag of a closed-class word, with the few context rules they need."""
    tag = CLOSED_CLASS[word]
    if word == "to" and nxt is not None and VERB_FORMS.get(nxt, ("", ""))[1] == "base":
        return "PART"
    if word == "that":
        return "DET" if _is_nounish(nxt) else "PRON"
    return tag


def _tag_verb_noun(word: str, prev: _Tok | None) -> _Tok:
    """A word that is a verb form and maybe a noun form: decide from context."""
    lemma, kind = VERB_FORMS[word]
    noun = NOUN_FORMS.get(word)
    if noun is None:
        return _Tok(word, "VERB", lemma)
    prev_tag = prev.tag if prev else None
    after_modifier = prev_tag in ("DET", "ADJ", "NUM") or (prev is not None and prev.word in POSSESSIVES)
    after_verb = prev_tag == "VERB" and kind in ("base", "s")
    if kind == "ing":
        return _Tok(word, "NOUN" if prev_tag == "DET" else "VERB", noun if prev_tag == "DET" else lemma)
    if after_modifier or after_verb or (prev_tag == "ADP" and prev.word != "to"):
        return _Tok(word, "NOUN", noun)
    return _Tok(word, "VERB", lemma)


def _tag_unknown(word: str, proper: bool) -> str:
    """Suffix rules for words outside the lexicon."""
    if proper:
        return "PROPN"
    if not word.isalpha():
        return "X"
    if word.endswith("ly") and len(word) > 3:
        return "ADV"
    if word.endswith(("ing", "ed")) and len(word) > 4:
        return "VERB"
    if word.endswith(ADJ_SUFFIXES) and len(word) > 5:
        return "ADJ"
    return "NOUN"


def _tag_word(word: str, proper: bool, nxt: str | None, prev: _Tok | None) -> _Tok:
    """Tag one lower-cased word given its neighbours."""
    if NUMBER_RE.match(word) or word in NUMBER_WORDS:
        return _Tok(word, "NUM", word)
    if word in ("do", "does", "did", "have", "has", "had"):
        verb_next = VERB_FORMS.get(nxt or "", ("", ""))[1] == "base" and nxt not in NOUN_FORMS
        lemma = "do" if word.startswith("d") else "have"
        return _Tok(word, "AUX", word) if verb_next or nxt == "not" else _Tok(word, "VERB", lemma)
    if word in CLOSED_CLASS:
        return _Tok(word, _tag_closed(word, nxt, prev), word)
    if word in PARTICLES:
        return _Tok(word, "ADP" if _can_start_np(nxt) else "ADV", word)
    if word in ADJ_OR_ADV:
        if word in ("left", "right", "back") and prev is not None and (
                prev.tag == "DET" or prev.word in POSSESSIVES) and not _is_nounish(nxt):
            return _Tok(word, "NOUN", word)
        return _Tok(word, "ADJ" if _is_nounish(nxt) else "ADV", word)
    if word in ADVERBS:
        return _Tok(word, "ADV", word)
    if word in ADJECTIVES:
        return _Tok(word, "ADJ", word)
    if word in VERB_FORMS:
        return _tag_verb_noun(word, prev)
    if word in NOUN_FORMS:
        return _Tok(word, "NOUN", NOUN_FORMS[word])
    return _Tok(word, _tag_unknown(word, proper), word)


def tag_words(text: str) -> list[tuple[str, str, str]]:
    """Tag a sentence: list of (word, Universal POS tag, lemma), all lower case."""
    words = _split_words(text)
    tagged: list[_Tok] = []
    for i, (word, proper) in enumerate(words):
        nxt = words[i + 1][0] if i + 1 < len(words) else None
        tagged.append(_tag_word(word, proper, nxt, tagged[-1] if tagged else None))
    return [(t.word, t.tag, t.lemma) for t in tagged]


def pos_tokens(text: str) -> str:
    """HumanML3D-style token string ``"word/POS word/POS ..."``.

    Words are lower-cased with punctuation removed; nouns and verbs are written
    as their lemma (walks -> walk, feet -> foot) like HumanML3D's spaCy output,
    other words as written.  Tags are Universal POS (NOUN, VERB, ADJ, ADV, ADP,
    DET, PRON, NUM, CCONJ, SCONJ, AUX, PART, PROPN, X).  Direction words:
    forward/backward/back/left/right are ADJ before a noun and ADV otherwise;
    up/down/around/over/... are ADP before a noun phrase and ADV otherwise.
    """
    parts = []
    for word, tag, lemma in tag_words(text):
        shown = lemma if tag in ("NOUN", "VERB") else word
        parts.append(f"{shown}/{tag}")
    return " ".join(parts)
