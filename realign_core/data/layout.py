"""The HumanML3D folder layout, shared by the dataset builder and loader.

::

    DIR/new_joint_vecs/ID.npy   (T-1, 263) float32 features (un-normalised)
    DIR/new_joints/ID.npy       (T-1, 22, 3) float32 joints recovered from them
    DIR/texts/ID.txt            lines "caption#word/POS ...#start#end" (seconds, 0#0 = whole clip)
    DIR/{train,val,test,train_val,all}.txt   one ID per line
    DIR/Mean.npy, DIR/Std.npy   normalisation (train split)
    DIR/metadata.jsonl          ours: per clip provenance and caption sources
    DIR/report.json             ours: dataset report

IDs starting with ``M`` are left-right mirrored copies of the ID without it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")
FEATURES_DIR = "new_joint_vecs"
JOINTS_DIR = "new_joints"
TEXTS_DIR = "texts"
METADATA_FILE = "metadata.jsonl"
REPORT_FILE = "report.json"
MIRROR_PREFIX = "M"


@dataclass
class Caption:
    """One caption of a clip; start/end in seconds relative to the clip (0, 0 = whole clip)."""

    text: str
    source: str  # kitml | cmu_description | cmu_class | kinematic | user_csv
    start: float = 0.0
    end: float = 0.0


@dataclass
class ClipRecord:
    """Provenance of one clip, one JSON line in metadata.jsonl."""

    id: str
    trial: str
    split: str
    mirror: bool
    start_frame: int        # in the 20-fps trial
    end_frame: int          # exclusive
    source_fps: float
    fps_source: str
    dataset: str = "cmu"
    captions: list[Caption] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "ClipRecord":
        raw = json.loads(line)
        raw["captions"] = [Caption(**c) for c in raw.get("captions", [])]
        return cls(**raw)


def read_metadata(root: Path) -> list[ClipRecord]:
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [ClipRecord.from_json(line) for line in fh if line.strip()]


def write_split_files(root: Path, ids_by_split: dict[str, list[str]]) -> None:
    """Write train/val/test plus HumanML3D's train_val.txt and all.txt, each as a new file (written beside it,
    then renamed over it), so a hard-linked copy of a dataset (``cp -al``) keeps the original's."""
    root = Path(root)
    train_val = sorted(ids_by_split["train"] + ids_by_split["val"])
    every = sorted(i for s in SPLITS for i in ids_by_split[s])
    files = {**{split: sorted(ids_by_split[split]) for split in SPLITS}, "train_val": train_val, "all": every}
    for name, ids in files.items():
        tmp = root / f"{name}.txt.tmp"
        tmp.write_text("".join(f"{i}\n" for i in ids))
        tmp.replace(root / f"{name}.txt")


def read_split(root: Path, split: str) -> list[str]:
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing split file (expected one ID per line)")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
