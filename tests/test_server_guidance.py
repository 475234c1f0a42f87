"""A server with a reward model: regenerating with another guidance strength keeps the noise."""
from __future__ import annotations

import numpy as np
import pytest

from server.client import decode_joints
from server.engine import Engine, model_defaults
from server.protocol import Limits, ProtocolError, Sampling, parse_generate
from tests.server_fixtures import FAST_STEPS, launch_tiny_server, tiny_server  # noqa: F401


@pytest.fixture(scope="module")
def guided_server(tiny_guided, tmp_path_factory):
    """A server on the tiny generator plus the tiny step-aware reward model and its bank."""
    server = launch_tiny_server(tiny_guided, tmp_path_factory)
    yield server
    assert server.stop() == 0, server.log_tail()


def test_only_the_guidance_changes_with_the_strength(guided_server, tiny_server):
    spec = dict(prompt="a person walks forward.", frames=60, steps=FAST_STEPS, seed=21)
    with guided_server.client(timeout=120) as guided, tiny_server.client(timeout=120) as plain:
        model = guided.hello()["model"]
        assert model["guidance"] is True
        assert model["defaults"]["strength"] == 0.0      # no guidance.toml: unguided unless asked

        def joints(client, **guidance):
            result = client.generate(**spec, **({"guidance": guidance} if guidance else {}))
            return decode_joints(result["motions"][0]["joints"]), result

        unguided, _ = joints(plain)
        off, _ = joints(guided, strength=0.0)
        # strength 0 is the plain sampler with the same noise (bit-identity within one pipeline is
        # tested in tests/test_guidance.py; across two server processes the cached text embeddings
        # may come from differently padded batches, ~1e-7 apart)
        assert np.allclose(off, unguided, atol=1e-5)
        slight, _ = joints(guided, strength=1e-3)
        strong, res = joints(guided, strength=1.0, mu=1.0, eta=1.0)
        again, _ = joints(guided, strength=1.0, mu=1.0, eta=1.0)
        other_seed = decode_joints(plain.generate(**{**spec, "seed": 22})["motions"][0]["joints"])
        assert res["sampling"]["guidance"] == {"strength": 1.0, "mu": 1.0, "eta": 1.0, "cfg": 7.5}
        assert np.array_equal(strong, again)
        d_slight, d_strong = np.abs(slight - off).max(), np.abs(strong - off).max()
        d_seed = np.abs(other_seed - off).max()
        assert d_strong > 0
        # a small strength moves the motion a little: the same starting noise, only the guidance differs
        assert d_slight < 0.05 * d_strong + 1e-5 and d_slight < 0.05 * d_seed


def test_guidance_defaults_and_checks_follow_the_reward_parts(tiny_guided):
    engine = Engine.load(tiny_guided, "cpu")
    assert engine.has_reward and engine.model_info()["reference_bank"] is True
    assert (engine.defaults.strength, engine.defaults.eta) == (0.0, 1.0)   # no guidance.toml: unguided
    guided = Sampling("ddim", FAST_STEPS, 7.5, strength=1.0, mu=1.0, eta=1.0)
    engine.check(guided)
    engine.pipeline.reward.bank = None                  # a model folder without reward/bank.pt
    assert model_defaults(engine.pipeline).eta == 0.0   # so that the defaults still run
    with pytest.raises(ProtocolError) as err:
        engine.check(guided)
    assert err.value.field == "guidance.eta" and "bank" in err.value.message
    engine.check(Sampling("ddim", FAST_STEPS, 7.5, strength=1.0, mu=1.0, eta=0.0))


def test_the_validated_sampling_and_guided_steps_are_the_server_defaults(tiny_guided, tmp_path):
    """guidance.toml's sampler/steps become the request defaults, and a guided request runs the validated
    guided steps (the protocol carries strength, mu and eta only)."""
    import shutil

    from server.engine import guidance_settings

    root = tmp_path / "models"
    shutil.copytree(tiny_guided, root)
    (root / "guidance.toml").write_text('[mld]\nscale = 3.0\nmu = 1.0\neta = 1.0\nplacement = "late"\n'
                                        'guided_steps = 2\nsampler = "ddim"\nsteps = 7\ncontrol_steps = 9\n')
    engine = Engine.load(root, "cpu")
    assert (engine.defaults.steps, engine.defaults.sampler, engine.defaults.strength) == (7, "ddim", 1.0)
    limits = Limits().for_model(engine.max_frames, engine.max_steps)
    plain = {"type": "generate", "id": "a", "prompt": "a person walks.", "frames": 40}
    requests = {"text": plain, "in place": {**plain, "in_place": True}, "loop": {**plain, "loop": True},
                "path": {**plain, "path": {"points": [[0, 0], [0, 1]], "times": [0, 1.9]}},
                "given": {**plain, "loop": True, "steps": 4},
                "sequence": {"type": "generate", "id": "s", "sequence": [{"prompt": "a person walks.", "seconds": 2},
                                                                       {"prompt": "a person jumps.", "seconds": 2}]}}
    steps = {name: parse_generate(r, limits, engine.defaults).sampling.steps for name, r in requests.items()}
    assert steps == {"text": 7, "in place": 7, "loop": 9, "path": 9, "given": 4, "sequence": 9}, steps
    settings = guidance_settings(Sampling("ddim", 7, 7.5, strength=0.5, mu=1.0, eta=0.0), engine.pipeline)
    assert (settings.guided_steps, settings.placement, settings.strength, settings.eta) == (2, "late", 0.5, 0.0)
    assert guidance_settings(Sampling("ddim", 7, 7.5, strength=0.0, mu=1.0, eta=1.0), engine.pipeline) is None


def test_the_validated_foot_lock_is_the_server_default_and_a_request_can_turn_it_off(tiny_guided, tmp_path):
    """guidance.toml's foot_lock becomes the request default; a request's foot_lock wins, keeps the job out of
    batches with the other setting and changes the joints the client gets (the pipeline locks the take)."""
    import shutil

    from server.engine import run_pipeline

    root = tmp_path / "models"
    shutil.copytree(tiny_guided, root)
    (root / "guidance.toml").write_text('[mld]\nscale = 3.0\nfoot_lock = true\n')
    engine = Engine.load(root, "cpu")
    assert engine.defaults.foot_lock is True
    limits = Limits().for_model(engine.max_frames, engine.max_steps)
    plain = {"type": "generate", "id": "a", "prompt": "a person stands still.", "frames": 40, "steps": 3}
    on = parse_generate(plain, limits, engine.defaults).sampling
    off = parse_generate({**plain, "foot_lock": False}, limits, engine.defaults).sampling
    assert on.foot_lock and not off.foot_lock and on.batch_key() != off.batch_key()
    assert on.as_dict()["foot_lock"] is True
    joints = {s.foot_lock: run_pipeline(engine.pipeline, ["a person stands still."], [40], [3], s, None)[0]
              for s in (on, off)}
    assert not np.allclose(joints[True], joints[False])
    np.testing.assert_allclose(joints[True][:, 1:, 1], joints[False][:, 1:, 1], atol=1e-5)   # heights kept


def test_realign_generate_samples_controlled_takes_with_control_steps(tiny_guided, tmp_path):
    """`realign generate` without --steps: text-only and in-place-only takes get guidance.toml's steps,
    takes with a loop, path or keyed poses and sequences its control_steps; --steps always wins."""
    import shutil
    from dataclasses import replace

    from realign_core.cli.generate import GenerateRequest, resolve_sampling
    from realign_core.control.sequence import Segment
    from realign_core.guidance.control_spec import ControlSpec
    from realign_core.pipeline import TextToMotionPipeline

    root = tmp_path / "models"
    shutil.copytree(tiny_guided, root)
    (root / "guidance.toml").write_text('[mld]\nscale = 3.0\nsampler = "ddim"\nsteps = 7\ncontrol_steps = 9\n')
    pipe = TextToMotionPipeline.from_checkpoints(root)
    text = GenerateRequest("a person walks.", sampling_given=set())
    requests = {"text": text, "in place": replace(text, control=ControlSpec(), in_place=True),
                "loop": replace(text, control=ControlSpec(loop=True)),
                "sequence": replace(text, sequence=[Segment("a person walks.", 2.0), Segment("a person jumps.", 2.0)]),
                "given": replace(text, control=ControlSpec(loop=True), sampling=replace(text.sampling, steps=4),
                                 sampling_given={"steps"})}
    steps = {name: resolve_sampling(pipe, r).sampling.steps for name, r in requests.items()}
    assert steps == {"text": 7, "in place": 7, "loop": 9, "sequence": 9, "given": 4}, steps


def test_the_consistency_sampler_defaults_to_its_distilled_cfg(tiny_guided, tmp_path):
    """When guidance.toml's CFG scale (the other samplers') differs from the one distilled into the consistency
    denoiser, an 'lcm' request that leaves guidance.cfg out gets the distilled scale and runs; other samplers
    get guidance.toml's; an explicit other scale is still refused by field."""
    import shutil
    from dataclasses import replace

    root = tmp_path / "models"
    shutil.copytree(tiny_guided, root)
    (root / "guidance.toml").write_text("[mld]\ncfg_scale = 2.5\n")
    engine = Engine.load(root, "cpu")
    distilled = engine.pipeline.consistency_cfg
    assert engine.defaults.cfg == 2.5 and distilled is not None and distilled != 2.5
    assert engine.defaults.lcm_cfg == distilled
    lcm = parse_generate({"type": "generate", "id": 1, "prompt": "a person walks.", "sampler": "lcm"},
                         Limits(), engine.defaults)
    ddim = parse_generate({"type": "generate", "id": 2, "prompt": "a person walks."}, Limits(), engine.defaults)
    assert lcm.sampling.cfg == distilled and ddim.sampling.cfg == 2.5
    engine.check(lcm.sampling)
    with pytest.raises(ProtocolError) as err:
        engine.check(replace(lcm.sampling, cfg=2.5))
    assert err.value.field == "guidance.cfg" and "distilled in" in err.value.message


def test_the_consistency_sampler_over_the_socket_and_its_refusals(tiny_server, tiny_guided, tmp_path):
    """"sampler": "lcm" runs the distilled few-step denoiser; a CFG scale other than the distilled one, or a
    model folder without the consistency denoiser, is refused by field, and the server keeps serving."""
    import shutil

    with tiny_server.client(timeout=120) as client:
        assert "lcm" in client.hello()["model"]["samplers"]
        result = client.generate(prompt="a person walks forward.", frames=60, steps=2, sampler="lcm", seed=3)
        joints = decode_joints(result["motions"][0]["joints"])
        assert joints.shape == (60, 22, 3) and np.isfinite(joints).all() and result["sampling"]["sampler"] == "lcm"
    engine = Engine.load(tiny_guided, "cpu")
    engine.check(Sampling("lcm", 2, engine.defaults.cfg, strength=1.0, mu=1.0, eta=1.0))
    with pytest.raises(ProtocolError) as err:
        engine.check(Sampling("lcm", 2, 5.0, strength=0.0, mu=1.0, eta=1.0))
    assert err.value.field == "guidance.cfg" and "distilled in" in err.value.message
    root = tmp_path / "models"
    shutil.copytree(tiny_guided, root)
    shutil.rmtree(root / "denoiser_lcm")
    with pytest.raises(ProtocolError) as err:
        Engine.load(root, "cpu").check(Sampling("lcm", 2, 7.5, strength=0.0, mu=1.0, eta=1.0))
    assert err.value.field == "sampler" and "realign train denoiser_lcm" in err.value.message
