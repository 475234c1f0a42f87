"""realign data captions: clips of a split whose captions match every pattern, on a hand-made dataset folder."""
from __future__ import annotations

import pytest

from realign_core.cli.main import main
from realign_core.data.caption_search import match_captions, split_captions


def _dataset(tmp_path):
    texts = {"a": ["a person walks forward.#a/DET#0.0#0.0", "someone walks and waves.#x#0#0"],
             "Ma": ["a person walks forward.#a/DET#0.0#0.0", "someone walks and waves.#x#0#0"],
             "b": ["a person is waving the right hand.#x#0#0"],
             "c": ["a person kicks.#x#0#0", "", "someone walks.#x#0#0"]}
    (tmp_path / "texts").mkdir()
    for clip, lines in texts.items():
        (tmp_path / "texts" / f"{clip}.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "train.txt").write_text("a\nMa\nb\nc\n")
    return tmp_path


def test_counts_clips_matching_every_pattern_with_mirrors_apart(tmp_path):
    captions = split_captions(_dataset(tmp_path), "train")
    assert captions["c"] == ["a person kicks.", "someone walks."]          # blank lines dropped, text before '#'
    both = match_captions(captions, ["wav(e|es|ing)", "WALK"], "train")
    assert both.matching_clips == ["a", "Ma"] and both.originals == 1     # one caption must match both
    assert both.per_pattern == {"wav(e|es|ing)": 3, "WALK": 3}
    assert both.captions == {"someone walks and waves.": 2}
    assert match_captions(captions, ["kick", "wave"]).matching_clips == []  # c kicks and walks, never waves


def test_cli_prints_counts_and_names_bad_input(tmp_path, capsys):
    data = _dataset(tmp_path)
    assert main(["data", "captions", str(data), "--match", "wav", "--match", "walk"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 of 4 clips have a caption matching all of ['wav', 'walk'] (1 of them originals" in out
    assert "2x someone walks and waves." in out
    with pytest.raises(SystemExit, match="pattern '\\(': "):
        main(["data", "captions", str(data), "--match", "("])
    with pytest.raises(SystemExit, match="val.txt: no such split file"):
        main(["data", "captions", str(data), "--split", "val", "--match", "x"])
