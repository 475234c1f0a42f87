"""CMU's one-line trial descriptions turned into plain sentences."""
from __future__ import annotations

import re

from realign_core.data.captions.lexicon import (
    ADJECTIVES,
    CLOSED_CLASS,
    NOUN_FORMS,
    NOUN_IRREGULAR_PLURAL,
    POSSESSIVES,
    VERB_FORMS,
    VOWELS,
    past_forms,
    third_person,
)

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
    vowel_sound = word[:1] in VOWELS and not word.startswith(("uni", "use", "one", "eu"))
    return "an" if vowel_sound or word.startswith("8") or word in ("11", "18") else "a"


def _verb_base(word: str) -> str | None:
    """Base form when ``word`` is a known verb in base form."""
    entry = VERB_FORMS.get(word)
    return entry[0] if entry and entry[1] == "base" else None


def _verb_lemma(word: str, kind: str) -> str | None:
    """Lemma when ``word`` is a known verb form of ``kind`` (base/s/ing/ed)."""
    entry = VERB_FORMS.get(word)
    return entry[0] if entry and entry[1] == kind else None


def _activity_lemma(word: str) -> str | None:
    """'jumps' -> 'jump' when ``word`` is an activity noun (singular or plural)."""
    if word in _ACTIVITY_NOUNS:
        return word
    lemma = NOUN_FORMS.get(word) or _verb_lemma(word, "s")
    if lemma is None and word.endswith("s"):
        lemma = word[:-1]
    return lemma if lemma in _ACTIVITY_NOUNS else None


def _is_plural(word: str) -> bool:
    """Rough plural test for a noun-phrase head."""
    return (word.endswith("s") and not word.endswith(("ss", "us", "is")) and word not in _NOT_PLURAL) \
        or word in NOUN_IRREGULAR_PLURAL.values()


def _starts_action(words: list[str], i: int) -> bool:
    """Whether the base verb ``words[i]`` begins a new action in a verb list.

    'run jump over' -> yes at 'jump'; 'pick box up' -> no at 'box' (an object
    of a transitive verb); 'walk forward turn left' -> yes at 'turn'.
    """
    word, prev = words[i], words[i - 1]
    nxt = words[i + 1] if i + 1 < len(words) else None
    if not _verb_base(word) or prev in ("to", "or", "and") or (word in ADJECTIVES and nxt not in _DIRECTIONS):
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
    out = [third_person(chunk[0])]
    for i, word in enumerate(chunk[1:], start=1):
        base = _verb_base(word)
        out.append(third_person(base) if base and chunk[i - 1] in ("or", "and") else word)
    return " ".join(out)


def _character_phrase(words: list[str]) -> str:
    """'old man' -> 'like an old man'."""
    return f"like {_article(words[0])} {' '.join(words)}"


def _does_phrase(np_words: list[str], head: str) -> str:
    """'does a golf swing', 'does forward jumps', 'does weight lifting'."""
    gerund = head not in _ACTIVITY_NOUNS and (
        _verb_lemma(head, "ing") is not None or (head.endswith("ing") and head not in NOUN_FORMS))
    bare = _is_plural(head) or head in _UNCOUNTABLE or gerund
    article = "" if bare else _article(np_words[0]) + " "
    return f"does {article}{' '.join(np_words)}"


def _head_index(words: list[str]) -> int | None:
    """Index of the first activity noun, verb or gerund in a noun phrase."""
    for i, word in enumerate(words):
        if word in ADJECTIVES and i + 1 < len(words):
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
    if all(m in ADJECTIVES or m in _EMOTIONS for m in modifiers):
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
    if rest and rest[-1] in _CHARACTERS and base and rest[0] not in CLOSED_CLASS:
        return [f"{third_person(base)} {_character_phrase(rest)}"]
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
    if CLOSED_CLASS.get(first) == "DET" or first in POSSESSIVES:
        return ["does " + " ".join(words)]
    if all(w in _EMOTIONS or w in ADJECTIVES for w in words) and words[-1] in _EMOTIONS:
        return ["acts " + " ".join(words)]
    if all(w in _DIRECTIONS for w in words) or first in _PREPOSITIONS - _DIRECTIONS:
        return ["moves " + " ".join(words)]
    lead = ""
    if len(words) > 1 and first.endswith("ly") and (_verb_base(words[1]) or _verb_lemma(words[1], "ing")):
        lead, words = first + " ", words[1:]
    if _verb_base(words[0]) and not (words[0] in ADJECTIVES and len(words) > 1 and _activity_lemma(words[1])):
        preds = _verb_predicates(words)
        return [lead + preds[0]] + preds[1:]
    if _verb_lemma(words[0], "ing") or (words[0].endswith("ing") and len(words[0]) > 4
                                         and words[0] not in NOUN_FORMS and words[0] not in _ACTIVITY_NOUNS):
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
    return all(w in NOUN_FORMS and not _activity_lemma(w) and not _verb_base(w) for w in words)


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
    return " ".join(["get", past_forms(lemma)[1], *particles, "by", _OTHER_PERSON])


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
