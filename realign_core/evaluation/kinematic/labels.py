"""Validation of the kinematic checks on real captioned clips.

Each :class:`CaptionLabel` says, from a clip's *human* captions (KIT-ML
sentences, CMU descriptions; never the kinematic captions, which come from the
same measurements as the checks), whether the clip surely does an action
(positive), surely does not (negative) or neither.  :func:`validate_checks`
runs every check of :mod:`realign_core.evaluation.kinematic.checks` on the
joints ``new_joints/ID.npy`` (F, 22, 3) m of a built dataset and reports, per
label, the recall on the positives and the false-positive rate on the
negatives (fractions with Wilson 95 % intervals).  Given another source of joints for the same clips
(``joints_of``, e.g. the motion VAE's reconstructions), it measures what survives that source: the recall
through the VAE is the ceiling of any generator that decodes with it.
"""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realign_core.evaluation.kinematic.checks import MeasuredMotion, all_checks
from realign_core.evaluation.metrics import wilson_interval

JointsSource = Callable[[str], np.ndarray]   # clip id -> joints (F, 22, 3) m, Y up, 20 fps


@dataclass(frozen=True)
class CaptionLabel:
    """Which real clips count as doing (positives) and surely not doing (negatives) an action.

    A clip is a positive when one of its human captions (KIT-ML, CMU descriptions;
    never the kinematic ones, which come from the same measurements) matches
    ``positive``, none matches ``exclude`` (compound or ambiguous descriptions),
    and the caption describes the clip: its trial was cut into a single clip, or
    (unless ``single_clip_only``) the caption describes one homogeneous activity
    (no sequence words such as "then", "and", "back", "again").  A clip
    is a negative when none of its human captions matches ``related``.
    ``checks``: the prompt checks whose OR is scored (several for "either side").
    """

    name: str
    checks: tuple[str, ...]
    positive: str
    exclude: str
    related: str
    single_clip_only: bool = False   # positives only from trials cut into one clip


_SEQUENCE = r"\bthen\b|\band\b|,|\bafter|\bbefore|\bwhile\b|\breturn|\bagain\b|\bstops?\b|\bstarts?\b|\bback\b"
_LOCOMOTION = (r"walk|stroll|march|step|stride|pace|wander|limp|stagger|sneak|tiptoe|shuffl|run|jog|sprint|"
               r"forward|ahead|front|straight|travel|go(es)? |move|moving|trajectory|path|direction")
_ACTIVITIES = (r"danc|climb|play|sport|game|dribbl|sword|fight|box|spar|karate|martial|ballet|jete|acrobat|"
               r"gymnast|terrain|stumbl|limp|mummy|zombie|drunk|act(s|ing)? like|pretend|mime|search|explor")
_TURNING = (r"turn|spin|rotat|twist|around|circle|curve|corner|clockwise|pirouette|left|right|figure|eight|zig|"
            r"wander|trajectory|direction|return|back and forth|u-turn|round|" + _LOCOMOTION + "|" + _ACTIVITIES)
_LR = r"\bleft\b.*\bright\b|\bright\b.*\bleft\b"
_TURN_TO = r"turn\w*\s+(around\s+)?(\d+\s*(degrees?)?\s+)?((to(wards)?|into) the\s+)?{side}|"
_TURN_LEFT = _TURN_TO.format(side="left") + r"(?<!counter )counter[- ]?clockwise|anti-?clockwise"
_TURN_RIGHT = _TURN_TO.format(side="right") + r"(?<![a-z-])(?<!counter )clockwise"
_SIDESTEP = (r"(walk|step|sneak|move|go|shuffl)\w*\s+(\w+\s+){0,2}(to the|sideways to the|sidewards to the)\s+{side}\b|"
             r"side ?step\w*\s+(to the\s+)?{side}\b")
_SIDESTEP_EXCLUDE = (_LR + r"|turn|lean|look|jump|hop|bend|front|diagonal|curve|corner|then|return|around|\bup\b|"
                     r"\bdown\b|ledge|platform|crouch|defensive")
_SIDEWAYS_RELATED = r"side|lateral|left|right|direction|diagonal|zig|shuffl|danc|trajector|around|defens"
_HAND_RELATED = (r"wav|hello|goodbye|greet|signal|hand|arm|traffic|point|gestur|direct|conduct|talk|danc|bird|fly|"
                 r"cheer|celebrat|clap|raise|lift|reach|throw|catch|swing|box|punch|fight|paint|clean|wipe|wash|"
                 r"comb|brush|drink|phone|scratch|salute|swim|climb|stretch|exercis|jack|basketball|play|tennis|"
                 r"golf|bat\b|bowl|juggl|sport|game|yoga|tai chi|martial|karate")

LABELS: tuple[CaptionLabel, ...] = (
    CaptionLabel("walk_forward", ("walk_forward",), r"\bwalk(s|ing)?\b|\bstroll|\bmarch(es|ing)?\b",
                 r"back|revers|side|lateral|left|right|turn|around|circle|curve|corner|zig|figure|diagonal|eight|"
                 r"return|stop|start|stair|climb|ramp|obstacle|over|under|beam|run|jog|jump|hop|skip|leap|sit|"
                 r"\blie|\blay|crawl|kneel|crouch|squat|fall|stumble|limp|drunk|place|spot|stand|wait|pause|"
                 r"pick|carry|push|pull|danc|punch|kick|throw|catch|balanc|wander|look|toe|heel|uneven|rope|"
                 r"slope|bump|zombie|tight|line|swing|trajectory|room|through|away|towards|in front|up to",
                 _LOCOMOTION, single_clip_only=True),
    CaptionLabel("walk_backward", ("walk_backward",),
                 r"(walk|step|go|move|sneak)\w*\s+(\w+\s+){0,2}backwards?\b|backwards? walk",
                 r"forwards? and backwards?|backwards? and forwards?|back and forth|turn|around|jump|hop|run|flip|"
                 r"roll|\boff\b|ledge|stairs|ball|sideways|attack|punch|feign|moonwalk|forward or",
                 r"back|revers|moonwalk|retreat|sideways|direction|trajectory|diagonal"),
    CaptionLabel("walk_left", ("walk_left",), _SIDESTEP.replace("{side}", "left"),
                 _SIDESTEP_EXCLUDE, _SIDEWAYS_RELATED),
    CaptionLabel("walk_right", ("walk_right",), _SIDESTEP.replace("{side}", "right"),
                 _SIDESTEP_EXCLUDE, _SIDEWAYS_RELATED),
    CaptionLabel("walk_sideways", ("walk_left", "walk_right"),
                 r"(walk|step|sneak|move|go|shuffl)\w*\s+(\w+\s+){0,2}(sideways|sidewards|to the (left|right))|"
                 r"side ?step|lateral (step|move)",
                 r"arabesque|dribble|punch|jump|hop|forward|backward|turn|diagonal|zig|cross|danc|lean|then|look|"
                 r"curve|corner|bend|front|around|return|and to the|foot to foot|\bup\b|\bdown\b|ledge|platform|"
                 r"crouch|defensive",
                 _SIDEWAYS_RELATED),
    CaptionLabel("turn_left", ("turn_left",), _TURN_LEFT, _LR + r"|obstacle|counter counter", _TURNING),
    CaptionLabel("turn_right", ("turn_right",), _TURN_RIGHT, _LR + r"|obstacle|counter counter", _TURNING),
    CaptionLabel("jump", ("jump",), r"\b(jump|jumps|jumping|hop|hops|hopping|leap|leaps|leaping)\b",
                 r"jacks?\b|\boff\b|onto|on top|ledge|down the|platform|box|stool|\bbar\b|mount|lindy|rope|"
                 r"trampoline|pretend|hopscotch",
                 r"jump|hop|leap|skip|bounc|danc|acrobat|flip|cartwheel|gymnast|handspring|somersault|jack|"
                 r"basketball|ballet|jete|trampoline|vault|kick|spin|fall|climb|dive|tumbl|break|dunk|ledge|"
                 r"stair|rope|play|sport|game|exercis|aerobic|monkey|chimp|gorilla|kangaroo|frog|rabbit|bunny"),
    CaptionLabel("run_forward", ("run_forward",), r"\b(run|runs|running|jog|jogs|jogging|sprint\w*)\b",
                 r"circle|figure|eight|turn|around|jump|leap|dive|roll|duck|walk|sneak|place|spot|treadmill|"
                 r"back|left|right|curve|obstacle|zig|drive|basketball|defensive|through|direction|scrambl|seat",
                 r"run|jog|sprint|race|fast|rush|hurr|chase|dash|basketball|soccer|football|play|dribble|"
                 r"defensive|drive|layup|dunk|sport|skip|gallop|bound|leap|jump|hop|game|quick"),
    CaptionLabel("sit_down", ("sit_down",),
                 r"\bsits? (back )?down\b|\bsits back\b|\bup to sit\b|does a (low|medium) sit",
                 r"climb|stepstool|stool|platform|dangle|ledge|ladder|high|\bsitting\b|\bsat\b|seated|\blie|"
                 r"lying|\blay|swim|wants to|about to|like",
                 r"sit|seat|chair|squat|crouch|kneel|\blie|lying|\blay|floor|ground|bend|stool|couch|bench|low|"
                 r"down|crawl|pick|fall|rest|yoga|stretch|lunge|duck|roll|get(s)? up|stand(s|ing)? up|rise|"
                 r"push-?up|sweep|mop|\btie|shoe|toilet|bow|pray|meditat|ground"),
    CaptionLabel("wave_right", ("wave_right",),
                 r"wav\w*\s+(\w+\s+){0,3}right (hand|arm)|right (hand|arm)\s+(\w+\s+){0,2}wav",
                 r"both|left|arms\b|traffic|bird|fly|flying|then",
                 _HAND_RELATED),
    CaptionLabel("wave_either", ("wave_right", "wave_left"), r"\bwav(e|es|ing)\b",
                 r"both|arms\b|traffic|bird|fly|flying|flag|ocean|hands in the air|then",
                 _HAND_RELATED),
    CaptionLabel("kick_either", ("kick_left", "kick_right"), r"\bkick(s|ing)?\b",
                 r"handstand|flip|spin|jump|punch|break|danc|knee|then|walk|run|stretch|turn|multiple|squat|"
                 r"while|kicking his legs|hands back",
                 r"kick|karate|martial|fight|box|punch|danc|soccer|football|ball|leg|foot|feet|knee|step|stretch|"
                 r"yoga|balanc|ballet|arabesque|acrobat|flip|cartwheel|gymnast|march|climb|stair|jump|hop|run|"
                 r"jog|exercis|lunge|squat|tai chi|kung|spar|defen|attack|swing|crawl|skip|stomp|play|sport|game"),
    CaptionLabel("stand_still", ("stand_still",),
                 r"stand\w* (still|idle|motionless|quietly|relaxed)|is standing\.?$|\bidle\b|t-?pose|static pose|"
                 r"stands? (in|with) (a |an )?(\w+ )?(ready|guard|defensive)",
                 r"then|walk|run|jump|\bsit|\blie|\blay|turn|wave|punch|kick|look|glanc|talk|gestur|stretch|"
                 r"danc|pick|bend|around|shift|sway|fidget|arm|hand",
                 r"stand|still|idle|wait|pose|place|spot|balanc|motionless|rest|stay|breath|look|talk|listen|"
                 r"think|relax|nothing|stationary|upright|posture|yoga|stretch|tai chi|sway|shift|fidget|bored|"
                 r"shiver|cold|cry|sad|guard|stance|ready"),
)


@dataclass
class ClipRecord:
    """One real clip: id, human captions (lower case), whether its trial has one clip, mirror flag."""

    id: str
    captions: list[str]
    single_clip_trial: bool
    mirror: bool


def load_clip_records(data_dir: str | Path, include_mirrored: bool = True) -> list[ClipRecord]:
    """Clips of a built dataset (metadata.jsonl) with their human captions (kinematic ones dropped)."""
    rows = [json.loads(line) for line in (Path(data_dir) / "metadata.jsonl").read_text().splitlines() if line.strip()]
    per_trial: dict[tuple[str, bool], int] = {}
    for r in rows:
        key = (r.get("trial", r["id"]), bool(r.get("mirror")))
        per_trial[key] = per_trial.get(key, 0) + 1
    out = []
    for r in rows:
        if r.get("mirror") and not include_mirrored:
            continue
        caps = [c["text"].lower() for c in r["captions"] if c.get("source") != "kinematic"]
        if caps:
            key = (r.get("trial", r["id"]), bool(r.get("mirror")))
            out.append(ClipRecord(r["id"], caps, per_trial[key] == 1, bool(r.get("mirror"))))
    return out


def label_clip(label: CaptionLabel, clip: ClipRecord) -> bool | None:
    """True (positive), False (negative) or None (neither) for one clip under one label."""
    if not any(re.search(label.related, c) for c in clip.captions):
        return False
    hits = [c for c in clip.captions if re.search(label.positive, c)]
    if not hits or any(re.search(label.exclude, c) for c in clip.captions):
        return None
    homogeneous = not label.single_clip_only and any(not re.search(_SEQUENCE, c) for c in hits)
    describes_clip = clip.single_clip_trial or homogeneous
    return True if describes_clip else None


def dataset_joints(data_dir: str | Path) -> JointsSource:
    """The real joints of a built dataset: clip id -> ``new_joints/ID.npy`` (F, 22, 3) m."""
    return lambda clip_id: np.load(Path(data_dir) / "new_joints" / f"{clip_id}.npy")


def _check_clips(joints_of: JointsSource, ids: Sequence[str], progress: bool = False) -> dict[str, dict[str, bool]]:
    """Every check (:func:`all_checks`) on the joints of each clip."""
    checks, out = all_checks(), {}
    for i, clip_id in enumerate(ids):
        m = MeasuredMotion(joints_of(clip_id))
        out[clip_id] = {name: bool(check(m)) for name, check in checks.items()}
        if progress and i % 1000 == 0:
            print(f"  checked {i}/{len(ids)} clips", file=sys.stderr, flush=True)
    return out


def _label_row(label: CaptionLabel, pos: list[str], neg: list[str], results: dict[str, dict[str, bool]]) -> dict:
    """Recall on the positives and false-positive rate on the negatives of one label, with Wilson CIs."""
    def passes(clip_id: str) -> bool:
        return any(results[clip_id][name] for name in label.checks)

    tp, fp = sum(map(passes, pos)), sum(map(passes, neg))
    return {"checks": list(label.checks), "positives": len(pos), "recall": tp / len(pos) if pos else None,
            "recall_ci95": list(wilson_interval(tp, len(pos))), "negatives": len(neg),
            "false_positive_rate": fp / len(neg) if neg else None, "fpr_ci95": list(wilson_interval(fp, len(neg))),
            "positive_ids": sorted(pos)}


def validate_checks(data_dir: str | Path, labels: Sequence[CaptionLabel] = LABELS,
                    include_mirrored: bool = True, progress: bool = False,
                    joints_of: JointsSource | None = None) -> dict[str, Any]:
    """Run every check on the captioned clips of a built dataset (metadata.jsonl): on their real joints
    (``new_joints/*.npy``), or on what ``joints_of`` gives for each clip id.

    Per label: positives (n, share passing = recall, Wilson 95 % CI) and negatives
    (n, share passing = false-positive rate, CI); plus, per label, the pass rate of
    every check on its positives (a confusion table).  Mirrored clips (mirrored
    joints, mirrored captions) are included unless ``include_mirrored`` is False,
    so left/right labels get both sides; a clip and its mirror are not independent.
    """
    data_dir = Path(data_dir)
    clips = load_clip_records(data_dir, include_mirrored)
    labelled = {c.id: {lab.name: label_clip(lab, c) for lab in labels} for c in clips}
    ids = [c.id for c in clips if any(v is not None for v in labelled[c.id].values())]
    results = _check_clips(joints_of or dataset_joints(data_dir), ids, progress)
    rows, confusion = {}, {}
    for lab in labels:
        pos = [i for i in ids if labelled[i][lab.name] is True]
        neg = [i for i in ids if labelled[i][lab.name] is False]
        rows[lab.name] = _label_row(lab, pos, neg, results)
        confusion[lab.name] = {name: (sum(results[i][name] for i in pos) / len(pos) if pos else None)
                               for name in all_checks()}
    return {"data_dir": str(data_dir), "include_mirrored": include_mirrored, "clips": len(clips),
            "labels": rows, "confusion": confusion}


def percent(x: float) -> str:
    return f"{100 * x:5.1f}"


def percent_with_ci(fraction: float, ci: tuple[float, float]) -> str:
    """'pass % [low, high]'."""
    return f"{percent(fraction)} [{percent(ci[0])},{percent(ci[1])}]"


def format_validation(result: dict[str, Any]) -> str:
    """Text tables of :func:`validate_checks`: recall / false-positive rate, then the confusion table."""
    head = f"{'label':14s} {'checks':24s} {'pos':>5s} {'recall % [95% CI]':>20s} {'neg':>6s} {'FPR % [95% CI]':>18s}"
    lines = [head, "-" * len(head)]
    for name, r in result["labels"].items():
        rec = "n/a" if r["recall"] is None else percent_with_ci(r["recall"], r["recall_ci95"])
        fpr = "n/a" if r["false_positive_rate"] is None else percent_with_ci(r["false_positive_rate"], r["fpr_ci95"])
        lines.append(f"{name:14s} {' or '.join(r['checks']):24s} {r['positives']:5d} {rec:>20s} "
                     f"{r['negatives']:6d} {fpr:>18s}")
    names = list(next(iter(result["confusion"].values()), {}))
    lines += ["", "pass % of each check (columns) on each label's positives (rows)",
              f"{'label':14s}" + "".join(f" {n[:6]:>6s}" for n in names)]
    for label, row in result["confusion"].items():
        lines.append(f"{label:14s}" + "".join(" " * 7 if row[n] is None else f" {100 * row[n]:6.0f}" for n in names))
    return "\n".join(lines)


def format_recall_through(real: dict[str, Any], through: dict[str, Any], name: str = "VAE") -> str:
    """Recall per label on the real joints beside the recall on another source of the same clips' joints
    (two :func:`validate_checks` results)."""
    head = f"{'label':14s} {'pos':>5s} {'real recall % [95% CI]':>24s} {name + ' recall % [95% CI]':>26s}"
    lines = [head, "-" * len(head)]
    for label, r in real["labels"].items():
        t = through["labels"][label]
        cells = ["n/a" if x["recall"] is None else percent_with_ci(x["recall"], x["recall_ci95"]) for x in (r, t)]
        lines.append(f"{label:14s} {r['positives']:5d} {cells[0]:>24s} {cells[1]:>26s}")
    return "\n".join(lines)
