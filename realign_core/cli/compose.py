"""``realign data compose``: part-composed training clips (``realign_core/training/compose_parts.py``)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def add_compose_command(data: argparse._SubParsersAction) -> None:
    """The ``realign data compose`` sub-command."""
    c = data.add_parser("compose", help="add training clips with a captured body part layered onto other clips "
                        "(e.g. a right-hand wave onto walks: 'a person walks forward and waves with the right hand.')")
    c.add_argument("dir", type=Path, help="a built dataset (HumanML3D layout); its train split grows")
    c.add_argument("--part", required=True, help="right_arm, left_arm or arms")
    c.add_argument("--part-match", action="append", required=True, metavar="REGEX",
                   help="caption pattern of the clips the part comes from (repeat: all must match)")
    c.add_argument("--base-match", action="append", required=True, metavar="REGEX",
                   help="caption pattern of the clips it goes onto (repeat: all must match)")
    c.add_argument("--phrase", required=True, help="what the part does, appended as '<base caption> and PHRASE.'")
    c.add_argument("--count", type=int, default=200, help="composed clips to write")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--prefix", default="comp", help="id prefix; composing again with it replaces those clips")
    c.add_argument("--json", type=Path, default=None, help="also write the summary here")
    c.set_defaults(func=_compose)


def _compose(args: argparse.Namespace) -> int:
    from realign_core.training.compose_parts import CompositionConfig, compose_part_clips

    try:
        cfg = CompositionConfig(args.part, tuple(args.part_match), tuple(args.base_match), args.phrase, args.count,
                                args.seed, args.prefix)
        summary = compose_part_clips(args.dir, cfg)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"realign data compose: {err}") from None
    print(f"wrote {summary['written']} composed train clips into {args.dir} ({args.part} of "
          f"{len(summary['sources'])} source clips onto {summary['bases']} base clips), e.g.:")
    for text in summary["examples"][:5]:
        print(f"  {text}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dir": str(args.dir), **asdict(cfg), **summary}, indent=1))
    return 0
