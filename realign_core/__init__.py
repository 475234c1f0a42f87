"""ReAlign text-to-motion: latent diffusion steered at every reverse step by a step-aware reward model.

Packages, bottom floor first (a module imports only from its own floor or below; nothing used at
inference imports ``training``, ``evaluation`` or ``cli``):

1. ``motion`` (skeleton, features, kinematics), ``text`` (sentence encoder), ``models`` (the
   networks and their loaders), ``device.py`` (CUDA/CPU and threads)
2. ``data`` (datasets and how they are built), ``export`` (BVH, SMPL, renders), ``diffusion``
   (schedules, samplers, base generators)
3. ``guidance`` (the reward-guidance hook and its embedding bank)
4. ``pipeline.py`` -- the front door: ``TextToMotionPipeline`` (text -> ``MotionOutput``)
5. ``control`` (paths, pose/keyframe constraints, loops and long sequences on top of the pipeline)
6. ``evaluation`` (metrics, tuning, benchmarks), ``batch`` (jobs CSV -> motions + manifest, locally
   or on a Ray cluster); the generation server lives in ``server/``
7. ``training`` (tasks, trainer, configs)
8. ``cli`` (the ``realign`` command; the only place with argument parsers)
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("realign")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
