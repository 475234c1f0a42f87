"""Captions for the text-to-motion training set.

Five small tools, all pure Python + numpy:

* :func:`mirror_caption` -- swap left/right words for mirrored motion copies;
* :func:`pos_tokens` -- a rule-based HumanML3D-style ``word/POS`` token string;
* :func:`caption_line` / :func:`parse_caption_line` -- HumanML3D ``texts/``
  lines ``caption#tokens#start#end``;
* :func:`cmu_description_to_sentence` -- CMU's one-line trial descriptions
  turned into plain sentences ("a person walks.");
* :func:`kinematic_captions` / :func:`measure_kinematics` -- short captions
  ("a person walks forward.") measured from joint positions.

Motion conventions are those of :mod:`realign_core.skeleton`: positions
``(T, 22, 3)`` in metres, Y up, floor at Y=0, frame 0 facing +Z with the
character's left at +X.  Yaw is measured about +Y from +Z towards +X, so a
positive heading change is a turn to the character's LEFT (counterclockwise
seen from above).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from realign_core.skeleton import FACE_JOINTS, JOINT_INDEX, LEFT_FOOT, NUM_JOINTS, RIGHT_FOOT

# ---------------------------------------------------------------------------
# 1. Mirroring captions
# ---------------------------------------------------------------------------

# Whole words (lower case) and their mirror image.  The canonical forms map
# onto each other, so mirroring twice is the identity for them.
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
    clockwise<->counterclockwise; "counter-clockwise", "anticlockwise" and
    "anti-clockwise" become "clockwise".  Words such as "leftover", "bright",
    "copyright", "alright" and the idiom "all right" are left alone.
    """
    return _WORD_RE.sub(_mirror_token, text)


# ---------------------------------------------------------------------------
# 2. A compact lexicon shared by the tagger and the description converter
# ---------------------------------------------------------------------------

_VERB_BASES: tuple[str, ...] = tuple("""
walk run jog jump hop skip leap turn spin twirl pivot rotate twist kick punch
strike hit box throw toss catch pitch bunt putt wave clap sit stand squat
crouch kneel bend bow curtsey lean lift raise lower drop step sidestep stomp
stamp march dance climb crawl creep sneak tiptoe swing sway stretch reach pick
grab push pull drag carry hold move go come get put set place take touch tap
pat point look stare gesture shake nod shrug balance stumble trip fall slip
slide roll flip somersault cartwheel dive swim fly fight block dodge duck
limp hobble pace wander stroll strut shuffle stagger bounce stop start begin
continue return keep perform do make use play mimic imitate act pretend wipe
wash clean sweep mop rake dig chop cut saw hammer paint write type drink eat
sip chug pour stir mix open close answer dial call talk argue laugh cry yawn
rest wait relax stay lie lay rise descend ascend mount hang dangle flex
extend circle cross rock shift bob fidget scratch rub brush comb shave tie
dribble shoot pass bat serve row paddle skate ski salute applaud cheer greet
hug comfort navigate avoid search explore investigate poke feel lunge veer
zigzag spread tilt glance search straighten shuffle brace land launch swat
wrestle shelter threaten resist pound explain teach sew slice wring plant
loosen tighten screw unscrew coil open drive ride flick feint break follow
halt scoop smash yawn whistle link join lead pull bring show give receive
stride mope scramble rush hurry whirl attack feign slap watch bang adjust
fix pause repeat direct fold arch curl cast conduct smoke vacuum slow finish
meet revolve peep fish freeze quarrel
""".split())

_VERB_IRREGULAR: dict[str, tuple[str, str]] = {  # base -> (past, past participle)
    "run": ("ran", "run"), "sit": ("sat", "sat"), "stand": ("stood", "stood"),
    "throw": ("threw", "thrown"), "catch": ("caught", "caught"), "bend": ("bent", "bent"),
    "hold": ("held", "held"), "swing": ("swung", "swung"), "spin": ("spun", "spun"),
    "get": ("got", "gotten"), "go": ("went", "gone"), "take": ("took", "taken"),
    "put": ("put", "put"), "set": ("set", "set"), "fall": ("fell", "fallen"),
    "make": ("made", "made"), "do": ("did", "done"), "come": ("came", "come"),
    "rise": ("rose", "risen"), "shake": ("shook", "shaken"), "fly": ("flew", "flown"),
    "swim": ("swam", "swum"), "sweep": ("swept", "swept"), "creep": ("crept", "crept"),
    "kneel": ("knelt", "knelt"), "drink": ("drank", "drunk"), "eat": ("ate", "eaten"),
    "slide": ("slid", "slid"), "bring": ("brought", "brought"), "keep": ("kept", "kept"),
    "hit": ("hit", "hit"), "cut": ("cut", "cut"), "strike": ("struck", "struck"),
    "dig": ("dug", "dug"), "hang": ("hung", "hung"), "ride": ("rode", "ridden"),
    "write": ("wrote", "written"), "begin": ("began", "begun"), "leap": ("leapt", "leapt"),
    "give": ("gave", "given"), "lead": ("led", "led"), "feel": ("felt", "felt"),
    "teach": ("taught", "taught"), "stride": ("strode", "stridden"), "drive": ("drove", "driven"),
    "break": ("broke", "broken"), "show": ("showed", "shown"), "lie": ("lay", "lain"),
    "lay": ("laid", "laid"), "pay": ("paid", "paid"), "buy": ("bought", "bought"),
}
_VERB_THIRD_IRREGULAR: dict[str, str] = {"do": "does", "go": "goes", "have": "has", "be": "is"}
# Verbs whose final consonant doubles before -ing/-ed (step -> stepping).
_DOUBLING: frozenset[str] = frozenset("""
step hop jog skip drop grab drag stop trip shrug clap tap slip swim spin run
sit get put set pat hug nod dip flip chop jab strut plan pop rub wag scrub hit
cut dig bob sob rip tip mop bat chug dab slap snap grip drum stab sidestep
""".split())
_VOWELS = "aeiou"


def _third_person(base: str) -> str:
    """Third-person singular present: walk -> walks, box -> boxes, carry -> carries."""
    if base in _VERB_THIRD_IRREGULAR:
        return _VERB_THIRD_IRREGULAR[base]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and len(base) > 1 and base[-2] not in _VOWELS:
        return base[:-1] + "ies"
    return base + "s"


def _present_participle(base: str) -> str:
    """-ing form: dance -> dancing, step -> stepping, lie -> lying."""
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")) and len(base) > 2:
        return base[:-1] + "ing"
    if base in _DOUBLING:
        return base + base[-1] + "ing"
    return base + "ing"


def _past_forms(base: str) -> tuple[str, str]:
    """(past, past participle): walk -> walked, carry -> carried, run -> ran/run."""
    if base in _VERB_IRREGULAR:
        return _VERB_IRREGULAR[base]
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in _VOWELS:
        past = base[:-1] + "ied"
    elif base in _DOUBLING:
        past = base + base[-1] + "ed"
    else:
        past = base + "ed"
    return past, past


def _build_verb_forms() -> dict[str, tuple[str, str]]:
    """Every inflected form -> (lemma, kind) with kind in base/s/ing/ed."""
    forms: dict[str, tuple[str, str]] = {}
    for base in _VERB_BASES:
        past, participle = _past_forms(base)
        for form, kind in ((_third_person(base), "s"), (_present_participle(base), "ing"),
                           (past, "ed"), (participle, "ed")):
            forms.setdefault(form, (base, kind))
    for base in _VERB_BASES:  # base forms win over other verbs' inflections
        forms[base] = (base, "base")
    return forms


_VERB_FORMS: dict[str, tuple[str, str]] = _build_verb_forms()

_NOUN_BASES: tuple[str, ...] = tuple("""
person man woman human figure individual character guy lady boy girl child
kid body head neck shoulder arm elbow forearm wrist hand finger thumb
palm fist chest torso waist hip leg thigh knee shin calf ankle foot toe heel
face chin ear eye mouth hair stomach belly spine side circle line direction
way ground floor wall chair stool table box ball object item door window stair
ladder ledge platform bar rope air place position pose stance motion
movement gesture time second minute meter metre degree lap path pattern shape
square zigzag partner front beam bench pole cup glass phone mug bottle hat
jacket coat umbrella broom club racket guitar violin piano drum weight bag
suitcase walk run jog jump hop skip leap turn spin kick punch throw catch
wave step dance climb crawl swing stretch reach push pull twist move hold look
squat lunge stomp march bow point cartwheel flip roll dive slide stroke pace
shake clap salute nod shrug fall slip trip rest handstand somersault thing
something ceiling ring string morning evening railing building routine
sequence exercise game sport golf tennis baseball basketball football soccer
yoga karate jacks terrain obstacle
stepstool seat tree flower plant window shot drive move signal tee bat dog
""".split())
_NOUN_IRREGULAR_PLURAL: dict[str, str] = {
    "foot": "feet", "person": "people", "man": "men", "woman": "women",
    "child": "children", "tooth": "teeth", "calf": "calves", "knife": "knives",
}


def _plural(noun: str) -> str:
    """Plural of a noun: arm -> arms, box -> boxes, body -> bodies, foot -> feet."""
    if noun in _NOUN_IRREGULAR_PLURAL:
        return _NOUN_IRREGULAR_PLURAL[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def _build_noun_forms() -> dict[str, str]:
    """Singular and plural noun forms -> lemma."""
    forms: dict[str, str] = {}
    for noun in _NOUN_BASES:
        forms.setdefault(_plural(noun), noun)
    for noun in _NOUN_BASES:
        forms[noun] = noun
    return forms


_NOUN_FORMS: dict[str, str] = _build_noun_forms()

# Closed word classes (Universal POS tags).
_CLOSED_CLASS: dict[str, str] = {
    **dict.fromkeys("a an the this these those each every all some any both either neither "
                    "no another".split(), "DET"),
    **dict.fromkeys("i you he she it we they me him us them myself yourself himself herself "
                    "itself ourselves themselves themself someone somebody something anyone "
                    "anybody anything everyone everybody everything nothing nobody who whom "
                    "what which whose his her hers its their theirs my mine your yours our "
                    "ours".split(), "PRON"),
    **dict.fromkeys("in on at to from with without into onto under above below behind beside "
                    "besides between toward towards against of for by near like upon within "
                    "after before during via onto underneath inside outside".split(), "ADP"),
    **dict.fromkeys("and or but nor".split(), "CCONJ"),
    **dict.fromkeys("while if because as when whilst although though unless whereas whether "
                    "until".split(), "SCONJ"),
    **dict.fromkeys("is are was were be been being am can could will would should may might "
                    "must shall".split(), "AUX"),
    **dict.fromkeys("not".split(), "PART"),
}
_POSSESSIVES: frozenset[str] = frozenset("his her their its my your our".split())
# Words that are ADP before a noun phrase and ADV otherwise ("turns around").
_PARTICLES: frozenset[str] = frozenset("up down around over off out across along through about "
                                       "past".split())
# Words that are ADJ before a noun ("left hand") and ADV otherwise ("turns left").
_ADJ_OR_ADV: frozenset[str] = frozenset("left right straight fast high low hard far forward "
                                        "backward back".split())
_ADVERBS: frozenset[str] = frozenset("""
then also again very still too so almost just only here there now together
apart once twice forwards backwards sideways away clockwise counterclockwise
anticlockwise diagonally upward upwards downward downwards inward inwards
outward outwards ahead aside overhead quite rather slightly really even
instead afterwards later soon first finally repeatedly
""".split())
_ADJECTIVES: frozenset[str] = frozenset("""
slow quick small large big long short wide narrow other same whole full half
heavy light careful casual happy sad angry scared drunk old young tall upright
ready slight sudden brisk normal regular several few many little tiny huge
different opposite second third last next final entire single double tight
stiff bouncy proud tired excited nervous confident depressed elated shy sexy
cool childish clumsy lavish relaxed rushed upset cold joyful graceful gangly
strong weak medium deep shallow low crouched bent straight open closed
uneven flat steep high deep invisible imaginary heavyset muscular sneaky
stern macho spastic achey hurt wounded gentle fancy wild evasive defensive
offensive
""".split())
_NUMBER_WORDS: frozenset[str] = frozenset("""
zero one two three four five six seven eight nine ten eleven twelve thirteen
fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
sixty seventy eighty ninety hundred thousand
""".split())
_ADJ_SUFFIXES: tuple[str, ...] = ("ful", "ous", "ive", "less", "able", "ible")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")


# ---------------------------------------------------------------------------
# 3. Rule-based part-of-speech tokens
# ---------------------------------------------------------------------------

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
    if word in _CLOSED_CLASS:
        return _CLOSED_CLASS[word] in ("DET", "PRON")
    if word in _NUMBER_WORDS or _NUMBER_RE.match(word):
        return True
    return word in _NOUN_FORMS or word in _ADJECTIVES or word in _ADJ_OR_ADV or (
        word not in _VERB_FORMS and word not in _ADVERBS and word not in _PARTICLES)


def _is_nounish(word: str | None) -> bool:
    """Whether ``word`` can head a noun phrase right after a modifier."""
    if word is None or word in _CLOSED_CLASS or word in _ADVERBS or word in _PARTICLES:
        return False
    if word in _NOUN_FORMS or word in _ADJECTIVES:
        return True
    return word not in _VERB_FORMS and word not in _ADJ_OR_ADV


def _tag_closed(word: str, nxt: str | None, prev: _Tok | None) -> str:
    """Tag of a closed-class word, with the few context rules they need."""
    tag = _CLOSED_CLASS[word]
    if word == "to" and nxt is not None and _VERB_FORMS.get(nxt, ("", ""))[1] == "base":
        return "PART"
    if word == "that":
        return "DET" if _is_nounish(nxt) else "PRON"
    return tag


def _tag_verb_noun(word: str, prev: _Tok | None) -> _Tok:
    """A word that is a verb form and maybe a noun form: decide from context."""
    lemma, kind = _VERB_FORMS[word]
    noun = _NOUN_FORMS.get(word)
    if noun is None:
        return _Tok(word, "VERB", lemma)
    prev_tag = prev.tag if prev else None
    after_modifier = prev_tag in ("DET", "ADJ", "NUM") or (prev is not None and prev.word in _POSSESSIVES)
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
    if word.endswith(_ADJ_SUFFIXES) and len(word) > 5:
        return "ADJ"
    return "NOUN"


def _tag_word(word: str, proper: bool, nxt: str | None, prev: _Tok | None) -> _Tok:
    """Tag one lower-cased word given its neighbours."""
    if _NUMBER_RE.match(word) or word in _NUMBER_WORDS:
        return _Tok(word, "NUM", word)
    if word in ("do", "does", "did", "have", "has", "had"):
        verb_next = _VERB_FORMS.get(nxt or "", ("", ""))[1] == "base" and nxt not in _NOUN_FORMS
        lemma = "do" if word.startswith("d") else "have"
        return _Tok(word, "AUX", word) if verb_next or nxt == "not" else _Tok(word, "VERB", lemma)
    if word in _CLOSED_CLASS:
        return _Tok(word, _tag_closed(word, nxt, prev), word)
    if word in _PARTICLES:
        return _Tok(word, "ADP" if _can_start_np(nxt) else "ADV", word)
    if word in _ADJ_OR_ADV:
        if word in ("left", "right", "back") and prev is not None and (
                prev.tag == "DET" or prev.word in _POSSESSIVES) and not _is_nounish(nxt):
            return _Tok(word, "NOUN", word)
        return _Tok(word, "ADJ" if _is_nounish(nxt) else "ADV", word)
    if word in _ADVERBS:
        return _Tok(word, "ADV", word)
    if word in _ADJECTIVES:
        return _Tok(word, "ADJ", word)
    if word in _VERB_FORMS:
        return _tag_verb_noun(word, prev)
    if word in _NOUN_FORMS:
        return _Tok(word, "NOUN", _NOUN_FORMS[word])
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


# ---------------------------------------------------------------------------
# 4. HumanML3D texts/ lines
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# 5. CMU trial descriptions -> sentences
# ---------------------------------------------------------------------------

_SUBJECT = "a person"
_OTHER_PERSON = "the other person"
_SELF_MARK = "selfmark"  # placeholder for "this subject" in two-person descriptions

# Descriptions (or what is left of them after removing numbers/units) that say
# nothing about the motion.
_CMU_UNINFORMATIVE: frozenset[str] = frozenset("""
unknown clean cleaned story calibration subject dynamic bad amc lost marker no
movie and trial dont match sequence long good alaska alaskan vacation slope
start misc test take trial motion miscellaneous
""".split())
_CMU_UNITS: frozenset[str] = frozenset("lb lbs kg m cm degree degrees deg".split())
_CMU_TYPOS: dict[str, str] = {
    "sraight": "straight", "steop": "step", "sequnce": "sequence", "sequesnce": "sequence",
    "bkwd": "backward", "bwk": "backward", "fwd": "forward", "flp": "flip", "twst": "twist",
    "bck": "back", "summersult": "somersault", "tigher": "tighter", "bannana": "banana",
    "deoderant": "deodorant", "martinee": "martini", "ang": "and", "elderlyman": "elderly man",
    "chip monk": "chipmunk", "side step": "sidestep", "rosey": "rosie", "tpose": "t-pose",
    "t pose": "t-pose", "hand stand": "handstand", "up right": "upright", "xtra": "extra",
    "fanc y": "fancy", "sequencewith": "sequence with", "endof": "end of",
    "duck footed": "duck-footed", "lay up": "layup", "lay-up": "layup", "mickey": "",
    "hand spring": "handspring", "foot work": "footwork",
}
# Regex rewrites applied to the lower-cased description, in order.
_CMU_REWRITES: tuple[tuple[str, str], ...] = (
    (r"\bnursery rhyme\b.*", "act out a nursery rhyme"),
    (r"\bblind man's bluff\b", "play blind man's bluff"),
    (r"\bfriends meet, hang out\b", "meet a friend, hang out"),
    (r"\bsoldiers march\b", "march like a soldier"),
    (r"\bquarrel - ", "quarrel with "),
    (r"(\d+)[- ]?degrees? (?:smooth )?(left|right) turns?\b", r"turn \2 \1 degrees"),
    (r"\bright angle turns\b", "with right angle turns"),
    (r"(?<!\bin )(?<!\ba )\bfigure eight(s?)\b", r"in a figure eight\1"),
    (r"\bin a figure eights\b", "in figure eights"),
    (r"\bcoffee mug\b", "drink from a coffee mug"),
    (r"\brange ?of ?motion\b", "move through a range of motion"),
    (r"\bpeek a boo\b", "play peekaboo"),
    (r"\bt-pose\b", "stand in a t-pose"),
    (r"\bstatic (?:dance )?pose\b", "hold a static pose"),
    (r"\bmotor ?cycle(?: pose)?\b", "pretend to ride a motorcycle"),
    (r"\b(?:(alternating|synchronized) )?jumping jacks\b", r"do \1 jumping jacks"),
    (r"\btai chi\b", "do tai chi"),
    (r"^around the world high five low$", "give high and low fives"),
    (r"\b(high|low)[- ]five\b", r"give a \1 five"),
    (r"\bhand shake\b", "shake hands"),
    (r"\bhop ?scotch\b", "play hopscotch"),
    (r"\bbox jump\b", "jump onto a box"),
    (r"\bchannel surfing\b", "flip through tv channels"),
    (r"\bbolt (loosening|tightening)\b", r"\1 a bolt"),
    (r", hand saw\b", " with a hand saw"),
    (r"\bdrag bad leg walk\b", "walk dragging a bad leg"),
    (r"\bwalk (wounded|hurt|bad) leg\b", r"walk with a \1 leg"),
    (r"\bcross leg run\b", "run with crossed legs"),
    (r"\bend of break ?dance\b", "finish a breakdance"),
    (r"\bbreak dance\b", "breakdance"),
    (r"\bquick stop\b", "stop quickly"),
    (r"\b(walk|run|jog) to (?=(?:run|stop|sneak|walk|jog)\b)", r"\1, then "),
    (r"^tv$", "watch tv"),
    (r"^(piano|violin|drums)$", r"play the \1"),
    (r"^frisbee$", "throw a frisbee"),
    (r"^football$", "play football"),
    (r"^idle$", "stand idle"),
    (r"^joy$", "act joyful"),
    (r"^butterfly$", "swim the butterfly stroke"),
    (r"^free style$", "swim freestyle"),
    (r"\b(back|breast|break|fly) stroke\b", r"swim the \1 stroke"),
    (r"\bhappy go luck(?:y)?\b", "happy-go-lucky"),
    (r"\bjump small forward\b", "small jump forward"),
    (r"^super tight (left|right)$", r"super tight \1 turn"),
    (r"\bpainful ?left ?knee\b", "move with a painful left knee"),
    (r"^slope ?\d*$", "move on a slope"),
    (r"\bsmall forward\b", "small step forward"),
    (r"\bstart (?=(?:walk|run|jog|hop)\b)", "start to "),
    (r"\b(?:bassai|empi|heiansyodan|gedanbarai|oiduki|mawashigeri|yokogeri|syutouuke)\b",
     "do a karate move"),
)
_CMU_PARENTHESES: tuple[tuple[str, str], ...] = (
    (r"\(repeated\)", " repeatedly"),
    (r"\(opposite direction\)", " in the opposite direction"),
    (r"\([^()]*\)", " "),
)
# "context - actions" prefixes that only name the setting; other prefixes are
# kept as a first item.
_CMU_CONTEXT_PREFIXES: frozenset[str] = frozenset((
    "playground", "story", "navigate", "vignettes", "dance", "conversation", "violence",
    "basketball", "football", "acrobatics", "stretch", "soccer", "hand signals",
))
_TWO_SUBJECT_RE = re.compile(r"\((?:\d+\s+)?subjects?\s*-\s*subject\s+([AB])\)", re.IGNORECASE)
_CLEANED_RE = re.compile(r"cleaned\s*grs", re.IGNORECASE)
_PREFIX_RE = re.compile(r"^([a-z][a-z ]{1,30}?)\s+-\s+(?=\S)")

# Nouns naming activities: "a golf swing", "forward jumps" -> "does a ...".
_ACTIVITY_NOUNS: frozenset[str] = frozenset("""
walk run jog jump hop leap skip turn spin twirl pirouette kick punch strike
throw toss pitch catch swing dance step sidestep stride march stroke flip
backflip somersault cartwheel handstand roll dive lunge squat stretch twist
bow curtsey wave salute move shot dribble drive stop fall slip stumble trip
slide crawl climb jete arabesque glissade routine whip wrestle rub bunt
putt serve layup shoot jab block split pushup situp sit stand hang balance
sequence signal motion gesture boogie shuffle lean mount charleston
breakdance salutation swordplay attitude fold handspring moonwalk footwork
""".split())
# Activity nouns used without an article ("does swordplay").
_UNCOUNTABLE: frozenset[str] = frozenset("swordplay yoga karate gymnastics acrobatics footwork".split())
# Heads that make a verb-initial item a noun phrase ("punch sequence").
_COMPOUND_HEADS: frozenset[str] = frozenset("sequence routine combo combination drill".split())
# Verbs that take no object: after them a following verb starts a new action.
_MOTION_VERBS: frozenset[str] = frozenset("""
walk run jog jump hop skip leap turn spin twirl pivot stop go roll dive crawl
fall stumble sit stand squat crouch kneel bend lean step sidestep march dance
climb creep sneak swim fly duck dodge limp pace wander stroll bounce start
return rise descend slide slip flip cartwheel somersault lunge yawn stretch
whirl twist tiptoe hobble stagger shuffle strut halt veer rest wait relax stay
mope shrug nod pause move
""".split())
# Animals and characters a subject imitates: "bear" -> "acts like a bear".
_CHARACTERS: frozenset[str] = frozenset("""
bear cat chicken dog dinosaur elephant fish gorilla monkey mouse panda panther
penguin snake tiger whale horse cow bird squirrel chipmunk roadrunner
hummingbird pterosaur dragon zombie ghost genie devil robot superhero rex
t-rex mummy frankenstein airplane helicopter insect mantis ballerina hippo ant
flamingo quail animal animals man lady teen woman child soldier thinker
monster frog kangaroo alien
""".split())
_EMOTIONS: frozenset[str] = frozenset("""
happy sad angry scared depressed elated shy sexy cool childish clumsy lavish
relaxed rushed upset cold joyful excited nervous tired confident proud bored
frustrated sneaky surprised very
""".split())
_DIRECTIONS: frozenset[str] = frozenset("""
forward forwards backward backwards sideways left right up down around over
back diagonally away under underneath through out off
""".split())
_PREPOSITIONS: frozenset[str] = frozenset("""
on in at to from with without into onto under above below behind between
toward towards against of for by near like upon through across along around
over off
""".split())
_NOUN_PHRASE_OPENERS: frozenset[str] = _PREPOSITIONS | frozenset("a an the his her their its".split())
_NOT_PLURAL: frozenset[str] = frozenset("stairs jacks gymnastics basketball class".split())


def _split_camel(text: str) -> str:
    """'AttitudeWalk8' -> 'Attitude Walk figure eight'; 'Front_Kicking001' -> 'Front Kicking'."""
    text = re.sub(r"(?<=[A-Za-z])_?\d{2,}\b", "", text)
    text = re.sub(r"(?i)(?:digital\s*)?figure\s*8(s?)\b", r" figure eight\1", text)
    text = re.sub(r"(?i)digital\s*(?:8|figure eight)\b", " figure eight", text)
    text = re.sub(r"(?<=[A-Za-z])8(s?)\b", r" figure eight\1", text)
    text = re.sub(r"(?<=[A-Za-z])_?\d+\b", "", text)
    text = re.sub(r"(?<=[a-z\d])(?=[A-Z])", " ", text)
    return text.replace("_", " ")


def _two_subject_roles(text: str) -> tuple[str, str | None]:
    """Remove a '(2 subjects - subject A)' marker; put placeholders for the roles.

    The subject's own letter becomes ``_SELF_MARK`` and the other letter "the
    other person" (both only as standalone capital letters).  Returns the text
    and the subject letter (None for one-person descriptions).
    """
    match = _TWO_SUBJECT_RE.search(text)
    if match is None:
        return text, None
    own = match.group(1).upper()
    other = "B" if own == "A" else "A"
    text = _TWO_SUBJECT_RE.sub(" ", text)
    text = re.sub(rf"\b{other}'s\b", f"{_OTHER_PERSON}'s", text)
    text = re.sub(rf"\b{own}'s\b", "their", text)
    text = re.sub(rf"\b{other}\b", _OTHER_PERSON, text)
    text = re.sub(rf"\b{own}\b", _SELF_MARK, text)
    return text, own


def _strip_prefix(clause: str) -> str:
    """'playground - climb' -> 'climb'; unknown 'x - y' -> 'x, y'."""
    prefix = _PREFIX_RE.match(clause)
    if prefix is None or clause.startswith("quarrel"):
        return clause
    name, rest = prefix.group(1), clause[prefix.end():]
    if name in _CMU_CONTEXT_PREFIXES:
        return rest
    if name in _CHARACTERS:
        return f"act like a {name}, {rest}"
    return f"{name}, {rest}"


def _normalise_description(description: str) -> str:
    """Lower-cased, cleaned description text (typos, camel case, rewrites)."""
    text = _CLEANED_RE.sub(" ", description)
    for pattern, repl in _CMU_PARENTHESES:
        text = re.sub(pattern, repl, text)
    text = _split_camel(text).lower()
    text = text.replace("/", " or ").replace('"', " ").replace("...", " ")
    text = " ".join(text.split()).strip(" .;,")
    for wrong, right in _CMU_TYPOS.items():
        text = re.sub(rf"\b{re.escape(wrong)}\b", right, text)
    text = "; ".join(_strip_prefix(c.strip()) for c in text.split(";"))
    for pattern, repl in _CMU_REWRITES:
        text = re.sub(pattern, repl, text)
    return " ".join(text.split()).strip(" .;,")


def _is_uninformative(text: str) -> bool:
    """True when nothing but numbers, units and filler words are left."""
    if not text or ".amc" in text:
        return True
    words = re.findall(r"[a-z]+", re.sub(r"\d+(?:\.\d+)?", " ", text))
    return all(w in _CMU_UNINFORMATIVE or w in _CMU_UNITS for w in words)


def _article(word: str) -> str:
    """'a' or 'an' before ``word``."""
    vowel_sound = word[:1] in _VOWELS and not word.startswith(("uni", "use", "one", "eu"))
    return "an" if vowel_sound or word.startswith("8") or word in ("11", "18") else "a"


def _verb_base(word: str) -> str | None:
    """Base form when ``word`` is a known verb in base form."""
    entry = _VERB_FORMS.get(word)
    return entry[0] if entry and entry[1] == "base" else None


def _verb_lemma(word: str, kind: str) -> str | None:
    """Lemma when ``word`` is a known verb form of ``kind`` (base/s/ing/ed)."""
    entry = _VERB_FORMS.get(word)
    return entry[0] if entry and entry[1] == kind else None


def _activity_lemma(word: str) -> str | None:
    """'jumps' -> 'jump' when ``word`` is an activity noun (singular or plural)."""
    if word in _ACTIVITY_NOUNS:
        return word
    lemma = _NOUN_FORMS.get(word) or _verb_lemma(word, "s")
    if lemma is None and word.endswith("s"):
        lemma = word[:-1]
    return lemma if lemma in _ACTIVITY_NOUNS else None


def _is_plural(word: str) -> bool:
    """Rough plural test for a noun-phrase head."""
    return (word.endswith("s") and not word.endswith(("ss", "us", "is")) and word not in _NOT_PLURAL) \
        or word in _NOUN_IRREGULAR_PLURAL.values()


def _starts_action(words: list[str], i: int) -> bool:
    """Whether the base verb ``words[i]`` begins a new action in a verb list.

    'run jump over' -> yes at 'jump'; 'pick box up' -> no at 'box' (an object
    of a transitive verb); 'walk forward turn left' -> yes at 'turn'.
    """
    word, prev = words[i], words[i - 1]
    nxt = words[i + 1] if i + 1 < len(words) else None
    if not _verb_base(word) or prev in ("to", "or", "and") or (word in _ADJECTIVES and nxt not in _DIRECTIONS):
        return False
    if _verb_base(prev):
        return prev in _MOTION_VERBS or word in _MOTION_VERBS
    if word not in _MOTION_VERBS:
        return False
    return prev in _DIRECTIONS or prev.endswith("ly") or (
        nxt in _DIRECTIONS and prev not in _NOUN_PHRASE_OPENERS)


def _verb_chunks(words: list[str]) -> list[list[str]]:
    """Split a verb-initial word list into actions: 'run jump over' -> [run], [jump over]."""
    chunks: list[list[str]] = [[words[0]]]
    for i in range(1, len(words)):
        if _starts_action(words, i):
            chunks.append([words[i]])
        else:
            chunks[-1].append(words[i])
    return chunks


def _conjugate_chunk(chunk: list[str]) -> str:
    """Third person for the leading verb and verbs after 'or'/'and' in the chunk."""
    out = [_third_person(chunk[0])]
    for i, word in enumerate(chunk[1:], start=1):
        base = _verb_base(word)
        out.append(_third_person(base) if base and chunk[i - 1] in ("or", "and") else word)
    return " ".join(out)


def _character_phrase(words: list[str]) -> str:
    """'old man' -> 'like an old man'."""
    return f"like {_article(words[0])} {' '.join(words)}"


def _does_phrase(np_words: list[str], head: str) -> str:
    """'does a golf swing', 'does forward jumps', 'does weight lifting'."""
    gerund = head not in _ACTIVITY_NOUNS and (
        _verb_lemma(head, "ing") is not None or (head.endswith("ing") and head not in _NOUN_FORMS))
    bare = _is_plural(head) or head in _UNCOUNTABLE or gerund
    article = "" if bare else _article(np_words[0]) + " "
    return f"does {article}{' '.join(np_words)}"


def _head_index(words: list[str]) -> int | None:
    """Index of the first activity noun, verb or gerund in a noun phrase."""
    for i, word in enumerate(words):
        if word in _ADJECTIVES and i + 1 < len(words):
            continue
        if _activity_lemma(word) or _verb_base(word) or _verb_lemma(word, "ing"):
            return i
    return None


def _styled_verb(words: list[str], head: int) -> list[str]:
    """'cat pick up' -> ['picks up like a cat']; 'drunk wait' -> ['waits in a drunk way'].

    Other modifiers make the whole item a noun phrase ('rug pull fall').
    """
    modifiers, rest = words[:head], _conjugate_chunk(words[head:])
    if not modifiers:
        return [rest]
    if modifiers[-1] in _CHARACTERS:
        return [f"{rest} {_character_phrase(modifiers)}"]
    if all(m in _ADJECTIVES or m in _EMOTIONS for m in modifiers):
        return [f"{rest} in {_article(modifiers[0])} {' '.join(modifiers)} way"]
    return [_does_phrase(words, words[-1])]


def _noun_phrase_predicate(words: list[str]) -> list[str] | None:
    """Predicates for an item that does not start with a verb.

    'golf swing' -> ['does a golf swing']; 'forward jumps' -> ['does forward
    jumps']; 'bear' -> ['acts like a bear']; 'cat pick up' -> ['picks up like a
    cat']; 'offensive move go left' -> ['does an offensive move', 'goes left'].
    """
    head = _head_index(words)
    if head is None:
        cut = next((i for i, w in enumerate(words) if w in _PREPOSITIONS), len(words))
        if cut and words[cut - 1] in _CHARACTERS:
            verb = "moves " if cut < len(words) else "acts "
            return [" ".join([verb + _character_phrase(words[:cut])] + words[cut:])]
        if words[-1] in ("pose", "stance"):
            return [f"stands in {_article(words[0])} {' '.join(words)}"]
        return None
    if not _activity_lemma(words[head]) and _verb_base(words[head]):
        return _styled_verb(words, head)
    end = head
    while end + 1 < len(words) and _activity_lemma(words[end + 1]) and not (
            end + 2 < len(words) and words[end + 2] in _DIRECTIONS):
        end += 1
    tail = words[end + 1:]
    split = next((i for i, w in enumerate(tail) if _verb_base(w) and (i == 0 or tail[i - 1] not in _NOUN_PHRASE_OPENERS)
                  and (not _activity_lemma(w) or (i + 1 < len(tail) and tail[i + 1] in _DIRECTIONS))), None)
    np_words = words[: end + 1] + (tail if split is None else tail[:split])
    preds = [_does_phrase(np_words, words[end])]
    if split is not None:
        preds += [_conjugate_chunk(c) for c in _verb_chunks(tail[split:])]
    return preds


def _gerund_predicate(words: list[str], alone: bool) -> list[str]:
    """'boxing' (alone) -> ['is boxing']; 'walking' in a list -> ['walks']."""
    base = _verb_lemma(words[0], "ing")
    rest = words[1:]
    if rest and rest[-1] in _CHARACTERS and base and rest[0] not in _CLOSED_CLASS:
        return [f"{_third_person(base)} {_character_phrase(rest)}"]
    if len(rest) == 1 and _activity_lemma(rest[0]) and (base is None or base in _MOTION_VERBS):
        return [_does_phrase(words, rest[0])]
    if alone or base is None:
        return ["is " + " ".join(words)]
    return [_conjugate_chunk([base] + rest)]


def _verb_predicates(words: list[str]) -> list[str]:
    """Verb-initial item: 'run jump over' -> ['runs', 'jumps over']."""
    if len(words) == 2 and (words[1] in _COMPOUND_HEADS or (
            words[0] in _MOTION_VERBS and _is_plural(words[1]) and _activity_lemma(words[1]))):
        return [_does_phrase(words, words[1])]
    return [_conjugate_chunk(c) for c in _verb_chunks(words)]


def _item_predicates(words: list[str], alone: bool) -> list[str] | None:
    """Third-person predicates ('walks forward') for one comma-separated item."""
    while words and words[0] in ("and", "then", "or", "both"):
        words = words[1:]
    if not words:
        return None
    first = words[0]
    if _CLOSED_CLASS.get(first) == "DET" or first in _POSSESSIVES:
        return ["does " + " ".join(words)]
    if all(w in _EMOTIONS or w in _ADJECTIVES for w in words) and words[-1] in _EMOTIONS:
        return ["acts " + " ".join(words)]
    if all(w in _DIRECTIONS for w in words) or first in _PREPOSITIONS - _DIRECTIONS:
        return ["moves " + " ".join(words)]
    lead = ""
    if len(words) > 1 and first.endswith("ly") and (_verb_base(words[1]) or _verb_lemma(words[1], "ing")):
        lead, words = first + " ", words[1:]
    if _verb_base(words[0]) and not (words[0] in _ADJECTIVES and len(words) > 1 and _activity_lemma(words[1])):
        preds = _verb_predicates(words)
        return [lead + preds[0]] + preds[1:]
    if _verb_lemma(words[0], "ing") or (words[0].endswith("ing") and len(words[0]) > 4
                                         and words[0] not in _NOUN_FORMS and words[0] not in _ACTIVITY_NOUNS):
        return [lead + p for p in _gerund_predicate(words, alone)]
    lemma = _verb_lemma(words[0], "s")
    if lemma and lemma not in _ACTIVITY_NOUNS:
        return [" ".join(words)]  # already third person ("comforts the other person")
    return _noun_phrase_predicate(words)


def _is_continuation(words: list[str]) -> bool:
    """Items that extend the previous one: 'backward', 'on a diagonal', 'legs'."""
    words = words[1:] if words and words[0] in ("and", "or") else words
    if not words:
        return True
    if words[0] in _DIRECTIONS and all(w in _DIRECTIONS or w in ("and", "or") for w in words):
        return True
    if words[0] in _PREPOSITIONS - _DIRECTIONS or words[0] == "a":
        return not _activity_lemma(words[-1])
    return all(w in _NOUN_FORMS and not _activity_lemma(w) and not _verb_base(w) for w in words)


def _split_items(text: str) -> list[list[str]]:
    """Comma/semicolon/'and'/'then' separated items, continuations merged back."""
    text = re.sub(r"\s+(?:and then|then|and)\s+(?=(\w+))",
                  lambda m: ", " if _verb_base(m.group(1)) or _verb_lemma(m.group(1), "ing") else m.group(0),
                  text)
    raw_items = [part.split() for part in re.split(r"\s*[,;]\s*", text) if part.strip()]
    items: list[list[str]] = []
    for words in raw_items:
        if items and _is_continuation(words):
            items[-1] = items[-1] + [","] + words
        else:
            items.append(words)
    return items


def _join_predicates(predicates: list[str]) -> str:
    """'a person A, B, then C.'"""
    if len(predicates) == 1:
        body = predicates[0]
    else:
        body = ", ".join(predicates[:-1]) + ", then " + predicates[-1]
    body = re.sub(r"\s+,", ",", body)
    return f"{_SUBJECT} {' '.join(body.split())}."


def _passive_item(item: str) -> str | None:
    """'comforts selfmark' -> 'get comforted by the other person'; None otherwise."""
    words = item.split()
    lemma = _verb_lemma(words[0], "s") if words else None
    if lemma is None or len(words) not in (2, 3) or words[-1] != _SELF_MARK:
        return None
    particles = words[1:-1]
    if particles and particles[0] not in ("down", "up"):
        return None
    return " ".join(["get", _past_forms(lemma)[1], *particles, "by", _OTHER_PERSON])


def _own_clauses(text: str, own: str | None) -> str:
    """For two-person descriptions keep only what this subject does (verbs in base form)."""
    if own is None:
        return text
    kept = []
    for clause in re.split(r"\s*;\s*", text):
        actor = "self"
        for item in re.split(r"\s*,\s*", clause):
            if item.startswith(_SELF_MARK + " "):
                actor, item = "self", item[len(_SELF_MARK) + 1:]
            elif item.startswith(_OTHER_PERSON + " "):
                actor = "other"
                passive = _passive_item(item[len(_OTHER_PERSON) + 1:])
                if passive:
                    kept.append(passive)
            if actor == "self" and item:
                first, _, rest = item.partition(" ")
                item = f"{_verb_lemma(first, 's') or first} {rest}".strip()
                kept.append(item.replace(_SELF_MARK, "themselves"))
    return ", ".join(kept)


def _item_words(words: list[str]) -> tuple[list[str], list[str]]:
    """Split an item at its first merged continuation: (main words, appended text)."""
    if "," not in words:
        return words, []
    cut = words.index(",")
    return words[:cut], words[cut:]


def cmu_description_to_sentence(description: str) -> str | None:
    """CMU's one-line trial description -> plain caption, or None.

    "playground - forward jumps, turn around" -> "a person does forward
    jumps, then turns around."; "walk" -> "a person walks."; "boxing" -> "a
    person is boxing."; "bear (human subject)" -> "a person acts like a bear.".
    Returns None for "Unknown", empty and uninformative descriptions (bare
    numbers/weights, "clean", "Story", calibration trials, ...).
    """
    text, own = _two_subject_roles(description or "")
    text = _normalise_description(text)
    if _is_uninformative(text):
        return None
    items = _split_items(_own_clauses(text, own))
    predicates: list[str] = []
    for words in items:
        main, extra = _item_words(words)
        preds = _item_predicates(main, alone=len(items) == 1)
        if preds:
            predicates.extend(preds[:-1] + [" ".join([preds[-1]] + extra)])
        elif predicates:  # an unrecognised item extends the previous action
            predicates[-1] = " ".join([predicates[-1], ","] + words)
    if not predicates:
        return None
    return _join_predicates(predicates)


# ---------------------------------------------------------------------------
# 6. Kinematic captions
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class KinematicCaptionConfig:
    """Thresholds for :func:`kinematic_captions` (SI units: m, s, m/s, degrees)."""

    min_duration_s: float = 1.0        # shorter clips get no caption
    smoothing_s: float = 0.5           # moving average of pelvis path and yaw (about one step)
    heading_window_s: float = 0.2      # frames averaged for the initial/final heading
    ground_percentile: float = 5.0     # floor = this percentile of the lowest foot joint
    foot_clearance_m: float = 0.06     # a foot is off the ground above this height
    min_airborne_s: float = 0.15       # a jump: both feet off the ground at least this long,
    max_airborne_s: float = 1.0        # ... at most this long (longer: raised ground, no jumps)
    max_raised_fraction: float = 0.25  # more time than this on raised ground: no caption
    min_jump_rise_m: float = 0.10      # ... with the pelvis this far above its median height
    static_excursion_m: float = 0.15   # "still": every joint within this of its mean position
    upright_leg_ratio: float = 0.75    # upright frame: pelvis height >= ratio * leg length
    upright_head_ratio: float = 0.5    # ... and head above pelvis by >= ratio * their distance
    min_upright_fraction: float = 0.9  # captions only for clips upright this often
    moving_speed_mps: float = 0.3      # frames faster than this count as moving
    walk_max_speed_mps: float = 1.8    # typical moving speed below this: walks
    run_min_speed_mps: float = 2.1     # at or above this: runs (between: "moves")
    min_travel_m: float = 0.8          # net displacement for a walk/run caption
    in_place_m: float = 0.3            # below this net displacement: "in place"
    min_straightness: float = 0.6      # |displacement| / path length for a direction word
    winding_straightness: float = 0.4  # below this the net heading change is not described
    sector_half_width_deg: float = 35.0  # forward/left/backward/right: ±45° less a 10° margin
    body_direction_share: float = 0.7  # share of moving distance in the same body direction
    turn_deg: float = 60.0             # |heading change| for "turns left/right"
    turn_around_deg: float = 150.0     # ... for "turns around"
    spin_deg: float = 330.0            # ... for "spins around" (in place only)


@dataclass(frozen=True)
class KinematicSummary:
    """What :func:`measure_kinematics` measured on a clip.

    duration_s: (T-1)/fps (s); forward_m, left_m: net pelvis displacement in
    the initial facing frame (m); path_length_m: length of the smoothed
    horizontal pelvis path (m); mean_speed_mps: path length / duration (m/s);
    typical_speed_mps: distance-weighted median speed of moving frames (m/s);
    heading_change_deg: net yaw change, positive = turned to the LEFT
    (counterclockwise seen from above); max_rise_m: max pelvis height above
    its median (m); airborne_fraction: share of frames with both feet off the
    ground; max_airborne_s: longest such run (s); raised_fraction: share of
    frames in runs too long for a jump (feet on stairs, platforms, ...);
    jump_count: airborne runs of jump length with the pelvis raised; body_direction: dominant travel
    direction relative to the body at each frame ('forward', 'left',
    'backward', 'right' or None) and body_direction_share, its share of the
    moving distance; static: every joint stayed still; upright_fraction:
    share of frames standing upright (not sitting, crawling, lying or upside
    down); upright: that share reaches the configured minimum.
    """

    duration_s: float
    forward_m: float
    left_m: float
    path_length_m: float
    mean_speed_mps: float
    typical_speed_mps: float
    heading_change_deg: float
    max_rise_m: float
    airborne_fraction: float
    max_airborne_s: float
    raised_fraction: float
    jump_count: int
    body_direction: str | None
    body_direction_share: float
    static: bool
    upright_fraction: float
    upright: bool

    @property
    def travel_m(self) -> float:
        """Net horizontal displacement (m)."""
        return math.hypot(self.forward_m, self.left_m)

    @property
    def straightness(self) -> float:
        """Net displacement / path length, 0..1 (1 for a straight path)."""
        return self.travel_m / self.path_length_m if self.path_length_m > 0 else 0.0


DEFAULT_KINEMATIC_CONFIG = KinematicCaptionConfig()
_SECTORS: tuple[tuple[str, float], ...] = (
    ("forward", 0.0), ("left", 90.0), ("backward", 180.0), ("right", -90.0),
)
_BODY_SECTOR_HALF_WIDTH_DEG = 45.0  # body-relative travel: plain quadrants
_DIRECTION_PHRASES: dict[str, str] = {
    "forward": "forward", "backward": "backward", "left": "to the left", "right": "to the right",
}
_LEG_JOINTS: tuple[tuple[int, int, int], ...] = (  # hip, knee, ankle per side
    (JOINT_INDEX["left_hip"], JOINT_INDEX["left_knee"], JOINT_INDEX["left_ankle"]),
    (JOINT_INDEX["right_hip"], JOINT_INDEX["right_knee"], JOINT_INDEX["right_ankle"]),
)
_PELVIS = JOINT_INDEX["pelvis"]
_HEAD = JOINT_INDEX["head"]
_CAPTION_SUBJECTS: tuple[str, ...] = ("a person", "someone")


def _check_motion(positions: np.ndarray) -> np.ndarray:
    """(T, 22, 3) float64 array, or ValueError."""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[1:] != (NUM_JOINTS, 3) or len(pos) < 2:
        raise ValueError(f"positions must be (T>=2, {NUM_JOINTS}, 3), got {pos.shape}")
    if not np.isfinite(pos).all():
        raise ValueError("positions contain NaN or inf")
    return pos


def _window(seconds: float, fps: int, frames: int) -> int:
    """An odd window length in frames, at least 1 and at most ``frames``."""
    n = min(max(1, int(round(seconds * fps))), frames)
    return n if n % 2 else max(1, n - 1)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding: (T, ...) -> (T, ...)."""
    if window <= 1:
        return values
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    cumsum = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
    return (cumsum[window:] - cumsum[:-window]) / window


def facing_yaw(positions: np.ndarray) -> np.ndarray:
    """Unwrapped facing yaw per frame.

    positions: (T, 22, 3) m -> (T,) rad; 0 when facing +Z, positive towards +X
    (the character turning to its left).  Facing = up x across, across =
    (right_hip - left_hip) + (right_shoulder - left_shoulder) on XZ.
    """
    r_hip, l_hip, r_sh, l_sh = FACE_JOINTS
    across = positions[:, r_hip] - positions[:, l_hip] + positions[:, r_sh] - positions[:, l_sh]
    # up x across = (across_z, 0, -across_x); yaw = atan2(facing_x, facing_z)
    return np.unwrap(np.arctan2(across[:, 2], -across[:, 0]))


def _typical_speed(speed: np.ndarray, config: KinematicCaptionConfig) -> float:
    """Distance-weighted median of the moving frames' speeds (m/s): the speed
    at which half of the distance was covered, so stops and starts count little."""
    moving = np.sort(speed[speed > config.moving_speed_mps])
    if not len(moving):
        return 0.0
    covered = np.cumsum(moving)
    return float(moving[np.searchsorted(covered, 0.5 * covered[-1])])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges where ``mask`` (T,) is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _foot_heights(pos: np.ndarray, config: KinematicCaptionConfig) -> tuple[np.ndarray, float]:
    """Lowest joint of each foot above the floor, (T, 2) m, and the floor height (m).

    The floor is a low percentile of the lowest foot joint over the clip.
    """
    lowest = np.stack([pos[:, list(LEFT_FOOT), 1].min(1), pos[:, list(RIGHT_FOOT), 1].min(1)], -1)
    floor = float(np.percentile(lowest.min(1), config.ground_percentile))
    return lowest - floor, floor


def _leg_length(pos: np.ndarray) -> float:
    """Mean hip-knee-ankle length of the two legs (m)."""
    total = 0.0
    for hip, knee, ankle in _LEG_JOINTS:
        total += np.linalg.norm(pos[:, knee] - pos[:, hip], axis=-1).mean()
        total += np.linalg.norm(pos[:, ankle] - pos[:, knee], axis=-1).mean()
    return total / len(_LEG_JOINTS)


def _upright_fraction(pos: np.ndarray, floor: float, config: KinematicCaptionConfig) -> float:
    """Share of frames with the pelvis at standing height and the head above it."""
    pelvis, head = pos[:, _PELVIS], pos[:, _HEAD]
    tall = pelvis[:, 1] - floor >= config.upright_leg_ratio * _leg_length(pos)
    head_up = head[:, 1] - pelvis[:, 1] >= config.upright_head_ratio * np.linalg.norm(head - pelvis, axis=-1)
    return float((tall & head_up).mean())


def _raised_fraction(airborne: np.ndarray, fps: int, config: KinematicCaptionConfig) -> float:
    """Share of frames in airborne runs longer than any jump (feet on raised ground)."""
    long_runs = [end - start for start, end in _runs(airborne) if (end - start) / fps > config.max_airborne_s]
    return sum(long_runs) / len(airborne)


def _jump_count(airborne: np.ndarray, rise: np.ndarray, fps: int, config: KinematicCaptionConfig) -> int:
    """Airborne runs of jump length (s) with the pelvis raised (m); 0 on raised ground."""
    runs = _runs(airborne)
    if any((end - start) / fps > config.max_airborne_s for start, end in runs):
        return 0  # "airborne" for too long: the feet are on something above the floor
    return sum(1 for start, end in runs
               if (end - start) / fps >= config.min_airborne_s and rise[start:end].max() >= config.min_jump_rise_m)


def _sector(angle_deg: float, half_width: float) -> str | None:
    """Which of forward/left/backward/right an angle (deg, +left) falls in, if any."""
    for name, centre in _SECTORS:
        diff = (angle_deg - centre + 180.0) % 360.0 - 180.0
        if abs(diff) < half_width:
            return name
    return None


def _body_direction(path: np.ndarray, yaw: np.ndarray, fps: int,
                    config: KinematicCaptionConfig) -> tuple[str | None, float]:
    """Dominant travel direction relative to the body, and its share of the distance.

    path: (T, 2) smoothed pelvis (x, z) m; yaw: (T,) rad.
    """
    step = np.diff(path, axis=0)
    speed = np.linalg.norm(step, axis=-1) * fps
    mid_yaw = 0.5 * (yaw[1:] + yaw[:-1])
    fwd = step[:, 0] * np.sin(mid_yaw) + step[:, 1] * np.cos(mid_yaw)
    left = step[:, 0] * np.cos(mid_yaw) - step[:, 1] * np.sin(mid_yaw)
    moving = speed > config.moving_speed_mps
    if not moving.any():
        return None, 0.0
    angles = np.degrees(np.arctan2(left[moving], fwd[moving]))
    sectors = np.array([_sector(a, _BODY_SECTOR_HALF_WIDTH_DEG) for a in angles])
    dist = speed[moving]
    shares = {name: float(dist[sectors == name].sum() / dist.sum()) for name, _ in _SECTORS}
    best = max(shares, key=shares.get)
    return best, shares[best]


def measure_kinematics(positions: np.ndarray, fps: int = 20,
                       config: KinematicCaptionConfig = DEFAULT_KINEMATIC_CONFIG) -> KinematicSummary:
    """Measure travel, turning, jumping, stillness and posture of a clip.

    positions: (T, 22, 3) metres, Y up, floor near Y=0; fps: frames per second.
    Displacements are expressed in the initial facing frame (forward = initial
    facing, left = the character's initial left).
    """
    pos = _check_motion(positions)
    duration = (len(pos) - 1) / fps
    win = _window(config.smoothing_s, fps, len(pos))
    yaw = _smooth(facing_yaw(pos), win)
    path = _smooth(pos[:, _PELVIS][:, [0, 2]], win)
    k = _window(config.heading_window_s, fps, len(pos))
    yaw0, yaw1 = float(yaw[:k].mean()), float(yaw[-k:].mean())
    disp = path[-1] - path[0]
    speed = np.linalg.norm(np.diff(path, axis=0), axis=-1) * fps
    rise = pos[:, _PELVIS, 1] - np.median(pos[:, _PELVIS, 1])
    feet, floor = _foot_heights(pos, config)
    airborne = (feet > config.foot_clearance_m).all(axis=1)
    body_dir, body_share = _body_direction(path, yaw, fps, config)
    upright_fraction = _upright_fraction(pos, floor, config)
    return KinematicSummary(
        duration_s=duration,
        forward_m=float(disp[0] * math.sin(yaw0) + disp[1] * math.cos(yaw0)),
        left_m=float(disp[0] * math.cos(yaw0) - disp[1] * math.sin(yaw0)),
        path_length_m=float(speed.sum() / fps),
        mean_speed_mps=float(speed.sum() / fps / duration) if duration > 0 else 0.0,
        typical_speed_mps=_typical_speed(speed, config),
        heading_change_deg=math.degrees(yaw1 - yaw0),
        max_rise_m=float(rise.max()),
        airborne_fraction=float(airborne.mean()),
        max_airborne_s=max((e - s for s, e in _runs(airborne)), default=0) / fps,
        raised_fraction=_raised_fraction(airborne, fps, config),
        jump_count=_jump_count(airborne, rise, fps, config),
        body_direction=body_dir, body_direction_share=body_share,
        static=bool(np.linalg.norm(pos - pos.mean(axis=0), axis=-1).max() < config.static_excursion_m),
        upright_fraction=upright_fraction,
        upright=upright_fraction >= config.min_upright_fraction,
    )


def _direction(summary: KinematicSummary, config: KinematicCaptionConfig) -> str | None:
    """Travel direction phrase when displacement and body-relative travel agree."""
    if summary.straightness < config.min_straightness:
        return None
    angle = math.degrees(math.atan2(summary.left_m, summary.forward_m))
    sector = _sector(angle, config.sector_half_width_deg)
    agrees = sector == summary.body_direction and summary.body_direction_share >= config.body_direction_share
    return _DIRECTION_PHRASES[sector] if sector and agrees else None


def _turn_phrase(heading_deg: float, config: KinematicCaptionConfig) -> str | None:
    """'turns left', 'turns around to the right', 'spins around to the left' or None."""
    side = "left" if heading_deg > 0 else "right"
    size = abs(heading_deg)
    if size >= config.spin_deg:
        return f"spins around to the {side}"
    if size >= config.turn_around_deg:
        return f"turns around to the {side}"
    if size >= config.turn_deg:
        return f"turns {side}"
    return None


def _gait_verb(summary: KinematicSummary, config: KinematicCaptionConfig) -> str:
    """'walks', 'runs', or 'moves' when the speed is in between."""
    if summary.typical_speed_mps < config.walk_max_speed_mps:
        return "walks"
    if summary.typical_speed_mps >= config.run_min_speed_mps:
        return "runs"
    return "moves"


def _jump_phrase(summary: KinematicSummary, config: KinematicCaptionConfig) -> str:
    """'jumps in place', 'jumps forward', ... or plain 'jumps'."""
    if summary.travel_m < config.in_place_m:
        return "jumps in place"
    direction = _direction(summary, config)
    return f"jumps {direction}" if direction else "jumps"


def _travel_phrase(summary: KinematicSummary, turn: str | None,
                   config: KinematicCaptionConfig) -> str | None:
    """'walks forward', 'runs', ...; None when the verb alone would say too little."""
    verb, direction = _gait_verb(summary, config), _direction(summary, config)
    if direction:
        return f"{verb} {direction}"
    return verb if verb != "moves" or turn else None


def _motion_predicate(summary: KinematicSummary, config: KinematicCaptionConfig) -> str | None:
    """The caption's predicate ('walks forward and turns left') or None if unclear."""
    turn = _turn_phrase(summary.heading_change_deg, config)
    travelling = summary.travel_m >= config.min_travel_m
    if travelling and abs(summary.heading_change_deg) >= config.spin_deg:
        return None  # looping path: no short description
    if travelling and summary.straightness < config.winding_straightness:
        turn = None  # winding path: the net heading change is not meaningful
    if summary.jump_count:
        base: str | None = _jump_phrase(summary, config)
    elif travelling and summary.body_direction_share >= config.body_direction_share:
        base = _travel_phrase(summary, turn, config)
    elif travelling:
        return None  # travels in no consistent body direction (dancing, sparring, ...)
    elif summary.path_length_m >= config.min_travel_m:
        return None  # went somewhere and came back
    else:
        base = None
    if base and turn:
        return f"{base} and {turn}"
    return base or turn


def kinematic_captions(positions: np.ndarray, fps: int = 20,
                       config: KinematicCaptionConfig = DEFAULT_KINEMATIC_CONFIG) -> list[str]:
    """Short captions measured from a motion, or [] when it is ambiguous.

    positions: (T, 22, 3) metres, Y up, floor at Y=0.  Directions are relative
    to the initial facing ("to the left" = the character's initial left), so
    the captions do not change when the whole motion is rotated about Y, and
    mirroring the motion mirrors the captions.  Returns two phrasings, e.g.
    ["a person walks forward.", "someone walks forward."], or [].
    """
    summary = measure_kinematics(positions, fps, config)
    if summary.duration_s < config.min_duration_s or not summary.upright \
            or summary.raised_fraction > config.max_raised_fraction:
        return []
    still = summary.static and not summary.jump_count
    predicate = "stands still" if still else _motion_predicate(summary, config)
    if predicate is None:
        return []
    return [f"{subject} {predicate}." for subject in _CAPTION_SUBJECTS]
