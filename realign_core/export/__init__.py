"""Getting motions out: joints ``.npy``, BVH (rotations by inverse kinematics), AMASS-style SMPL ``.npz``
(``formats``, ``inverse_kinematics``) and stick-figure GIF/MP4/PNG renders (``render``)."""
