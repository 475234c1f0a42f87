"""The jobs CSV of ``realign batch``: defaults, and errors that name file, line, row and column (no models)."""
from __future__ import annotations

import pytest

from realign_core.batch.jobs import JobsError, read_jobs, to_request
from realign_core.batch.plan import WorkBatch, plan
from server.protocol import Defaults, Limits


def write(tmp_path, text: str, name: str = "jobs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rows_get_defaults_names_and_the_server_request(tmp_path):
    path = write(tmp_path, "Prompt,seconds,samples,steps,strength,cfg,name,armature,start_frame\n"
                           "a person walks,2,3,20,0,5,walk,Rig,10\n\n"
                           '"waves, then sits",,,,,,,,\n')
    rows = read_jobs(path)
    assert [r.row for r in rows] == [1, 2] and [r.line for r in rows] == [2, 4]
    walk, wave = rows
    assert walk.motion_names() == ["walk_s0", "walk_s1", "walk_s2"] and wave.motion_names() == ["row0002"]
    assert (walk.armature, walk.start_frame, walk.seed, wave.seed, wave.seconds) == ("Rig", 10.0, 1, 2, 6.0)
    req = to_request(path, walk, Limits(), Defaults(cfg=7.5, strength=1.0))
    assert [m.seed for m in req.motions] == [1, 2, 3] and req.frames == 40
    assert (req.sampling.steps, req.sampling.cfg, req.sampling.strength) == (20, 5.0, 0.0)
    default = to_request(path, wave, Limits(), Defaults(cfg=7.5, strength=1.0, mu=0.5))
    assert (default.sampling.cfg, default.sampling.strength, default.sampling.mu) == (7.5, 1.0, 0.5)
    assert default.prompts == ("waves, then sits",)


@pytest.mark.parametrize("text, line, column, words", [
    ("prompt,colour\nwalk,red\n", 1, None, "unknown column 'colour'"),
    ("seconds\n2\n", 1, None, "no 'prompt' column"),
    ("prompt,seconds\nwalk,2\nrun,two\n", 3, "seconds", "finite number, got 'two'"),
    ("prompt,seed\nwalk,1.5\n", 2, "seed", "whole number"),
    ("prompt,steps\nwalk,0\n", 2, "steps", "[1, 1000]"),
    ("prompt,seconds\nwalk,60\n", 2, "seconds", "seconds"),
    ("prompt,strength\nwalk,-1\n", 2, "strength", "'strength' must be a finite number in [0, 100]"),
    ("prompt,sampler\nwalk,euler\n", 2, "sampler", "must be one of ddim"),
    ("prompt,samples\nwalk,17\n", 2, "samples", "[1, 16]"),
    ("prompt,name\nwalk,a b\n", 2, "name", "not a valid name"),
    ("prompt,name,samples\nwalk,w,2\nrun,w_s1,1\n", 3, "name", "also made by row 1"),
    ("prompt,seconds\n,2\n", 2, "prompt", "empty"),
    ("prompt,seconds\nwalk,2,3\n", 2, None, "3 values for 2 columns"),
    ("prompt\n", None, None, "no data rows"),
    ("", 1, None, "empty"),
])
def test_bad_files_say_where_and_why(tmp_path, text, line, column, words):
    path = write(tmp_path, text)
    with pytest.raises(JobsError) as err:
        read_jobs(path)
    message = str(err.value)
    assert message.startswith(str(path)) and words in message, message
    assert err.value.line == line and err.value.field == column
    if column:
        assert f"column '{column}'" in message


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(JobsError, match="file not found"):
        read_jobs(tmp_path / "nope.csv")
    path = tmp_path / "latin1.csv"
    path.write_bytes("prompt\nsaut\xe9\n".encode("latin-1"))
    with pytest.raises(JobsError, match="not UTF-8"):
        read_jobs(path)


def test_model_limits_apply_when_the_rows_are_resolved(tmp_path):
    path = write(tmp_path, "prompt,seconds,steps\nwalk,9,100\n")
    row = read_jobs(path)[0]   # fine against the protocol's limits ...
    with pytest.raises(JobsError, match=r"line 2 \(row 1\), column 'steps'.*\[1, 50\]"):
        to_request(path, row, Limits().for_model(196, 50), Defaults())   # ... not against a 50-step model


def test_plan_groups_compatible_rows_like_the_server_queue(tmp_path):
    path = write(tmp_path, "prompt,steps,samples,strength\n"
                           "a,10,2,0\nb,20,1,0\nc,10,1,0\nd,10,30,0\n".replace(",30,", ",16,"))
    rows = read_jobs(path)
    requests = [to_request(path, r, Limits(), Defaults()) for r in rows]
    batches = plan(rows, requests, max_batch=4)
    # rows 1 and 3 share sampler/steps/cfg/guidance: one run of 3 motions; row 4 (16 motions) alone; row 2 alone
    assert [[m.row for m in b.motions] for b in batches] == [[1, 1, 3], [2], [4] * 16]
    assert [b.sampling.steps for b in batches] == [10, 20, 10]
    assert [b.index for b in batches] == [0, 1, 2]
    assert WorkBatch.from_json(batches[0].to_json()) == batches[0]
    skipped = plan(rows, requests, max_batch=4, skip={"row0001_s0", "row0003"})
    assert [[m.name for m in b.motions] for b in skipped][:2] == [["row0001_s1"], ["row0002"]]


def test_works_without_ray_and_says_how_to_get_it(tmp_path):
    """With ray unimportable: the package and CLI import, and --ray fails at once with the install hint."""
    import subprocess
    import sys

    jobs = write(tmp_path, "prompt\na person walks\n")
    code = ("import sys; sys.modules['ray'] = None\n"
            "import realign_core.batch, realign_core.batch.ray_runner\n"
            "from realign_core.cli.main import main\n"
            f"main(['batch', {str(jobs)!r}, '--out', {str(tmp_path / 'out')!r}, '--ray', 'auto', "
            f"'--models', {str(tmp_path)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "--ray needs Ray: pip install 'realign[ray]' (ray[data]==2.60.0)" in proc.stderr
    assert not (tmp_path / "out").exists()
