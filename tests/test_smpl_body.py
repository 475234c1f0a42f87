"""The add-on's numpy SMPL reader and forward pass (blender_addon/realign_blender/smpl_body.py) against smplx,
on the synthetic SMPL-format model of tests/smpl_synthetic.py, stored three ways: a plain pickle, an .npz,
and a pickle laid out like the official files (chumpy arrays, a scipy sparse J_regressor) read without
chumpy or scipy."""
from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from tests.addon_modules import load
from tests.smpl_synthetic import SYNTHETIC_VERTEX_IDS, synthetic_smpl_arrays, write_synthetic_smpl

smpl = load("smpl_body")
skeleton = load("skeleton")


def _rest() -> np.ndarray:
    pos = np.zeros((22, 3))
    for j, p in enumerate(skeleton.PARENTS):
        pos[j] = skeleton.TPOSE_OFFSETS[j] + (pos[p] if p >= 0 else 0)
    return pos


def test_numpy_forward_pass_matches_smplx(tmp_path):
    torch = pytest.importorskip("torch")
    smplx = pytest.importorskip("smplx")
    folder = write_synthetic_smpl(tmp_path, _rest())
    model = smpl.load_model(folder)
    rng = np.random.default_rng(0)
    frames = 4
    poses, trans, betas = rng.normal(0, 0.5, (frames, 72)), rng.normal(0, 0.3, (frames, 3)), rng.normal(0, 1, 10)
    verts, joints = smpl.skin(model, poses, trans, betas)
    body = smplx.create(str(folder), model_type="smpl", vertex_ids=SYNTHETIC_VERTEX_IDS, batch_size=frames)
    t = lambda a: torch.tensor(a, dtype=torch.float32)
    out = body(global_orient=t(poses[:, :3]), body_pose=t(poses[:, 3:]), transl=t(trans),
               betas=t(np.tile(betas, (frames, 1))))
    v_err = np.abs(out.vertices.detach().numpy() - verts).max()
    j_err = np.abs(out.joints.detach().numpy()[:, :24] - joints).max()
    print(f"numpy SMPL vs smplx: vertices {v_err:.1e} m, joints {j_err:.1e} m")
    assert v_err < 1e-5 and j_err < 1e-5
    assert np.abs(verts - smpl.skin(model, np.zeros_like(poses), trans, betas)[0]).max() > 0.05  # poses matter


def test_npz_and_official_style_pickles_read_the_same_arrays(tmp_path, monkeypatch):
    arrays = synthetic_smpl_arrays(_rest())
    np.savez(tmp_path / "model.npz", **arrays)
    fake = types.ModuleType("chumpy.ch")

    class Ch:  # stands for chumpy.ch.Ch: pickled with its state, the array in "x"
        def __init__(self, x):
            self.x = x

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    fake.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", fake)
    official = {**arrays, "v_template": Ch(arrays["v_template"]), "shapedirs": Ch(arrays["shapedirs"]),
                "posedirs": Ch(arrays["posedirs"]), "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"])}
    (tmp_path / "official.pkl").write_bytes(pickle.dumps(official, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    monkeypatch.delitem(sys.modules, "chumpy")
    reference = smpl.load_model(write_synthetic_smpl(tmp_path / "plain", _rest()))
    for name in ("model.npz", "official.pkl"):
        model = smpl.load_model(tmp_path / name)
        for field in ("v_template", "shapedirs", "posedirs", "regressor", "weights", "faces"):
            np.testing.assert_array_equal(getattr(model, field), getattr(reference, field), err_msg=f"{name} {field}")


def test_bad_model_files_name_the_problem(tmp_path):
    arrays = synthetic_smpl_arrays(_rest())
    np.savez(tmp_path / "short.npz", **{**arrays, "weights": arrays["weights"][:, :22]})
    with pytest.raises(ValueError, match=r"short.npz: weights has shape \(52, 22\), expected \(52, 24\)"):
        smpl.load_model(tmp_path / "short.npz")
    np.savez(tmp_path / "partial.npz", v_template=arrays["v_template"])
    with pytest.raises(ValueError, match="partial.npz: not a SMPL model, missing shapedirs"):
        smpl.load_model(tmp_path / "partial.npz")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="junk.pkl: not a readable SMPL model"):
        smpl.load_model(tmp_path / "junk.pkl")
    with pytest.raises(FileNotFoundError, match="SMPL_FEMALE"):
        smpl.load_model(tmp_path, gender="female")
