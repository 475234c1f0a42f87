"""Control beyond text, on top of the pipeline: constrained motions (paths, keyed poses, loops, in-place
clips with a root track) and long multi-prompt sequences.

* ``warp``     exact keyed poses by a smooth displacement
* ``motion``   ``generate_controlled``: the pipeline with constraints, finished (loops closed, root track)
* ``sequence`` ``generate_sequence``: a list of (prompt, seconds) as one continuous motion

The constraints themselves (costs, the guidance hook, the validated ControlSpec) live one floor lower,
in ``realign_core.guidance.constraints`` and ``realign_core.guidance.control_spec``.
"""
