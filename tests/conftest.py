"""Shared test fixtures: where ../shared is, and skipping when it is absent."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from realign_core.data.build import BuildConfig, build_dataset
from tests.synthetic import to_cmu20, walking_motion

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
BUILD_CFG = BuildConfig(workers=2)


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the calling test with the reason it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared data folder beside the repo")
    return path


@pytest.fixture(scope="session")
def synthetic_sources(tmp_path_factory):
    """A tiny CMU/KIT/HumanML3D-index tree with good and bad trials."""
    root = tmp_path_factory.mktemp("sources")
    joints = (root / "cmu" / "joints")
    joints.mkdir(parents=True)
    np.save(joints / "01_01.npy", to_cmu20(walking_motion(frames=60, fps=12)))
    np.save(joints / "01_05.npy", to_cmu20(walking_motion(frames=180, fps=12, turn_deg=120)))
    np.save(joints / "02_01.npy", to_cmu20(walking_motion(frames=50, fps=12, direction_deg=90, speed=1.0)))
    (joints / "01_02.npy").write_bytes(b"corrupt")
    nan = to_cmu20(walking_motion(frames=40, fps=12))
    nan[5, 3] = np.nan
    np.save(joints / "01_03.npy", nan)
    np.save(joints / "01_04.npy", to_cmu20(walking_motion(frames=1, fps=12)))
    (root / "cmu" / "descriptions.csv").write_text(
        'motion,description,subject\n01_01,walk,s1\n01_05,"walk forward, turn around",s1\n02_01,Unknown,s2\n')
    (root / "cmu" / "action_classes.csv").write_text("motion,action_type\n01_01,Walk\n02_01,Walk\n")
    index = root / "index"
    index.mkdir()
    (index / "index.csv").write_text("source_path,start_frame,end_frame,new_name\n"
                                     "./pose_data/CMU/01/01_05_poses.npy,0,100,000001.npy\n"
                                     "./pose_data/CMU/01/01_01_poses.npy,0,-1,000002.npy\n")
    (index / "train.txt").write_text("000002\nM000002\n")
    (index / "val.txt").write_text("")
    (index / "test.txt").write_text("000001\nM000001\n")
    kit = root / "kitml"
    kit.mkdir()
    (kit / "annotations.json").write_text(json.dumps({"00007": {
        "path": "CMU/01/01_01_poses", "duration": 5.0,
        "annotations": [{"seg_id": "00007_0", "text": "A person walks to the left.", "start": 0.0, "end": 5.0}]}}))
    return root


@pytest.fixture(scope="session")
def built(synthetic_sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    src = synthetic_sources
    report = build_dataset(src / "cmu", src / "kitml", src / "index", out, BUILD_CFG, progress=False)
    return out, report


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """8 motion classes x 6 clips in the HumanML3D layout (see tests/synthetic.py)."""
    from tests.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic_dataset"))


@pytest.fixture(scope="session")
def tiny_generator(synthetic_dataset, tmp_path_factory):
    """A real tiny VAE + latent denoiser (+ its consistency distillation, for the 'lcm' sampler) trained on the
    synthetic dataset with configs/tiny.toml."""
    from realign_core.training.config import load_config
    from realign_core.training.registry import make_task
    from realign_core.training.trainer import Trainer

    root = tmp_path_factory.mktemp("tiny_models")
    summaries = {}
    for kind in ("vae", "denoiser", "denoiser_lcm"):
        section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", kind)
        task = make_task(kind, section, synthetic_dataset, root, kind)
        summaries[kind] = Trainer(task, synthetic_dataset, root / kind, cfg, progress=False).fit()
    return root, summaries


@pytest.fixture(scope="session")
def tiny_guided(tiny_generator, synthetic_dataset, tmp_path_factory):
    """The tiny generator plus a real tiny step-aware reward model and its embedding bank, in a new root."""
    import shutil

    from realign_core.guidance.reward_bank import build_bank, motion_embedder
    from realign_core.models.layout import bank_path
    from realign_core.models.reward_model import load_reward_model
    from realign_core.training.config import load_config
    from realign_core.training.registry import make_task
    from realign_core.training.trainer import Trainer

    root = tmp_path_factory.mktemp("tiny_guided")
    for kind in ("vae", "denoiser", "denoiser_lcm"):
        shutil.copytree(tiny_generator[0] / kind, root / kind)
    section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", "reward")
    task = make_task("reward", section, synthetic_dataset, root, "reward")
    Trainer(task, synthetic_dataset, root / "reward", cfg, progress=False).fit()
    ckpt = root / "reward" / "best.pt"
    build_bank(motion_embedder(load_reward_model(ckpt)), ckpt, synthetic_dataset, progress=False).save(bank_path(root))
    return root


@pytest.fixture(scope="session")
def tiny_stack(tmp_path_factory):
    """Every model kind trained with configs/tiny.toml on a synthetic set with 32 test clips."""
    from realign_core.training.config import load_config
    from realign_core.training.registry import KINDS, make_task
    from realign_core.training.trainer import Trainer
    from tests.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path_factory.mktemp("eval_data"), clips_per_class=24, frames=(44, 72))
    root = tmp_path_factory.mktemp("stack")
    for kind in KINDS:
        section, cfg = load_config(REPO_ROOT / "configs" / "tiny.toml", kind)
        Trainer(make_task(kind, section, data, root, kind), data, root / kind, cfg, progress=False).fit()
    return data, root


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread (and do not fight other processes for cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
