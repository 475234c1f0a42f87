"""Captions for the text-to-motion training set.

* ``mirror``: swap left/right words for mirrored motion copies;
* ``tokens``: rule-based HumanML3D-style ``word/POS`` token strings (``lexicon`` holds the words);
* ``lines``: HumanML3D ``texts/`` lines ``caption#tokens#start#end``;
* ``cmu_descriptions``: CMU's one-line trial descriptions as plain sentences;
* ``kinematic``: short captions measured from joint positions ("a person walks to the left.").
"""
from realign_core.data.captions.cmu_descriptions import cmu_description_to_sentence
from realign_core.data.captions.kinematic import (
                                                  KinematicCaptionConfig,
                                                  KinematicSummary,
                                                  kinematic_captions,
                                                  measure_kinematics,
)
from realign_core.data.captions.lines import CaptionRecord, caption_line, parse_caption_line
from realign_core.data.captions.mirror import mirror_caption
from realign_core.data.captions.tokens import pos_tokens, tag_words

__all__ = [
    "CaptionRecord", "KinematicCaptionConfig", "KinematicSummary", "caption_line", "cmu_description_to_sentence",
    "kinematic_captions", "measure_kinematics", "mirror_caption", "parse_caption_line",
    "pos_tokens", "tag_words",
]
