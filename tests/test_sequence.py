"""Long multi-prompt sequences on the real tiny generator: windows, continuity, errors."""
from __future__ import annotations

import numpy as np
import pytest

from realign_core.control.sequence import Segment, generate_sequence, plan_windows
from realign_core.pipeline import SamplingConfig, TextToMotionPipeline

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is faster and fair to others


def test_windows_cover_every_segment_and_split_long_ones():
    segs = [Segment("walk", 2.0), Segment("run", 20.0), Segment("sit", 1.5)]
    windows = plan_windows(segs, max_frames=196, overlap=10)
    assert sum(w.new for w in windows) == 40 + 400 + 30
    assert windows[0].overlap == 0 and all(w.overlap == 10 for w in windows[1:])
    assert all(w.frames <= 196 for w in windows)
    assert [w.segment for w in windows] == [0, 1, 1, 1, 2]
    assert [w.start for w in windows] == [0, 40, 174, 307, 440]


@pytest.mark.parametrize("segments, message", [
    ([], r"sequence must have 1\.\.64 entries, got 0"),
    ([Segment("walk", 0.5)], r"sequence\[0\]\.seconds must be a finite number >= 1, got 0.5"),
    ([Segment("walk", 2), Segment("  ", 2)], r"sequence\[1\]\.prompt must be a non-empty string"),
    ([Segment("walk", 400), Segment("run", 300)], r"sequence lasts 700 s in total; at most 600 s"),
])
def test_bad_sequences_are_refused_naming_the_entry(segments, message):
    with pytest.raises(ValueError, match=message):
        plan_windows(segments, 196)


def test_a_sequence_is_one_continuous_motion(tiny_generator):
    pipe = TextToMotionPipeline.from_checkpoints(tiny_generator[0])
    segs = [Segment("a person walks forward.", 1.5), Segment("a person runs forward.", 1.5),
            Segment("a person stands still.", 1.0)]
    steps = []
    seq = generate_sequence(pipe, segs, seed=2, cfg=SamplingConfig(steps=8), overlap=6,
                            callback=lambda i, n: steps.append((i, n)))
    assert seq.joints.shape == (80, 22, 3) and np.isfinite(seq.joints).all()
    assert seq.segments == [(0, 30), (30, 60), (60, 80)]
    assert steps[-1] == (23, 24) and len(steps) == 24
    # no pop at the seams: the frame-to-frame step there is like the steps inside the windows
    speed = np.linalg.norm(np.diff(seq.joints, axis=0), axis=-1).mean(-1)
    for start, _ in seq.segments[1:]:
        assert speed[start - 1] < 3 * np.median(speed) + 0.02, (start, speed[start - 1], np.median(speed))
    assert seq.features().shape == (80, 263)
