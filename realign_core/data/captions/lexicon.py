"""A compact English lexicon shared by the POS tagger and the CMU description converter."""
from __future__ import annotations

import re

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
VOWELS = "aeiou"


def third_person(base: str) -> str:
    """Third-person singular present: walk -> walks, box -> boxes, carry -> carries."""
    if base in _VERB_THIRD_IRREGULAR:
        return _VERB_THIRD_IRREGULAR[base]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and len(base) > 1 and base[-2] not in VOWELS:
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


def past_forms(base: str) -> tuple[str, str]:
    """(past, past participle): walk -> walked, carry -> carried, run -> ran/run."""
    if base in _VERB_IRREGULAR:
        return _VERB_IRREGULAR[base]
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2] not in VOWELS:
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
        past, participle = past_forms(base)
        for form, kind in ((third_person(base), "s"), (_present_participle(base), "ing"),
                           (past, "ed"), (participle, "ed")):
            forms.setdefault(form, (base, kind))
    for base in _VERB_BASES:  # base forms win over other verbs' inflections
        forms[base] = (base, "base")
    return forms


VERB_FORMS: dict[str, tuple[str, str]] = _build_verb_forms()

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
NOUN_IRREGULAR_PLURAL: dict[str, str] = {
    "foot": "feet", "person": "people", "man": "men", "woman": "women",
    "child": "children", "tooth": "teeth", "calf": "calves", "knife": "knives",
}


def _plural(noun: str) -> str:
    """Plural of a noun: arm -> arms, box -> boxes, body -> bodies, foot -> feet."""
    if noun in NOUN_IRREGULAR_PLURAL:
        return NOUN_IRREGULAR_PLURAL[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in VOWELS:
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


NOUN_FORMS: dict[str, str] = _build_noun_forms()

# Closed word classes (Universal POS tags).
CLOSED_CLASS: dict[str, str] = {
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
POSSESSIVES: frozenset[str] = frozenset("his her their its my your our".split())
# Words that are ADP before a noun phrase and ADV otherwise ("turns around").
PARTICLES: frozenset[str] = frozenset("up down around over off out across along through about "
                                       "past".split())
# Words that are ADJ before a noun ("left hand") and ADV otherwise ("turns left").
ADJ_OR_ADV: frozenset[str] = frozenset("left right straight fast high low hard far forward "
                                        "backward back".split())
ADVERBS: frozenset[str] = frozenset("""
then also again very still too so almost just only here there now together
apart once twice forwards backwards sideways away clockwise counterclockwise
anticlockwise diagonally upward upwards downward downwards inward inwards
outward outwards ahead aside overhead quite rather slightly really even
instead afterwards later soon first finally repeatedly
""".split())
ADJECTIVES: frozenset[str] = frozenset("""
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
NUMBER_WORDS: frozenset[str] = frozenset("""
zero one two three four five six seven eight nine ten eleven twelve thirteen
fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
sixty seventy eighty ninety hundred thousand
""".split())
ADJ_SUFFIXES: tuple[str, ...] = ("ful", "ous", "ive", "less", "able", "ible")
NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
