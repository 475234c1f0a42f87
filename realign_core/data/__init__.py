"""Training data: the HumanML3D folder layout, its loader and how it is built.

* ``dataset``   ``MotionTextDataset`` over a HumanML3D-layout folder (ours or the official release)
* ``build``     ``realign data build``: CMU mocap + KIT-ML captions -> clips, captions, splits, Mean/Std
* ``layout``    file names of a dataset folder; ``report`` its build report
* ``cmu``       CMU 20-joint -> SMPL-22 mapping, 12/6 fps detection
* ``bvh``       generic BVH import (CMU, Bandai Namco, Mixamo names) and ``realign data add-bvh``
* ``captions``  caption mirroring, tokens, CMU descriptions, captions measured from kinematics
"""
