"""Helpers for the Blender tests: armatures from test rigs, evaluated joint positions, a fake server."""
from __future__ import annotations

import base64
import json
import socket
import threading

import numpy as np

from tests.addon_modules import load

rig_mod = load("rig")
kinematics = load("kinematics")


def armature_from_rig(rig, name: str):
    """A Blender armature object with the rig's bones (heads, tails, rolls, parents, object matrix)."""
    import bpy
    from mathutils import Matrix

    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(rig.object_matrix.tolist())
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for i, bname in enumerate(rig.names):
        eb = arm.edit_bones.new(bname)
        eb.head, eb.tail, eb.roll = rig.heads[i].tolist(), rig.tails[i].tolist(), float(rig.edit_rolls[i])
        if rig.parents[i] >= 0:
            eb.parent = arm.edit_bones[rig.names[rig.parents[i]]]
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    obj.select_set(True)
    return obj


def evaluated_heads(obj, names: list[str], frames) -> np.ndarray:
    """World head positions (len(frames), len(names), 3) of pose bones as Blender evaluates them."""
    import bpy

    out = []
    for f in frames:
        bpy.context.scene.frame_set(int(np.floor(f)), subframe=float(f - np.floor(f)))
        mw = np.array(obj.matrix_world)
        out.append([(mw @ np.append(np.array(obj.pose.bones[n].head), 1.0))[:3] for n in names])
    return np.array(out)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


LIMB_PAIRS = [(j, c) for j, c in rig_mod.LIMB_CHILD.items()]


LEGS = {"left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"}


def limb_errors(obj, bone_map: dict, placed: np.ndarray, frames, idx, legs: bool = True) -> np.ndarray:
    """Bone-direction errors (deg) of evaluated limbs against placed source joints at motion frames idx.

    legs=False leaves out the leg bones (foot pinning bends them on purpose).
    """
    pairs = [(j, c) for j, c in LIMB_PAIRS if j in bone_map and c in bone_map and (legs or j not in LEGS)]
    names = sorted({bone_map[x] for pair in pairs for x in pair})
    heads = evaluated_heads(obj, names, frames)
    col = {n: i for i, n in enumerate(names)}
    errs = []
    for j, c in pairs:
        got = heads[:, col[bone_map[c]]] - heads[:, col[bone_map[j]]]
        want = placed[idx, rig_mod.J[c]] - placed[idx, rig_mod.J[j]]
        errs.append(angle_deg(got, want))
    return np.stack(errs, 1)


def encode(arr: np.ndarray) -> dict:
    a = np.ascontiguousarray(arr, dtype="<f4")
    return {"dtype": "float32", "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def foot_contacts(motion: np.ndarray) -> dict:
    """The ``foot_contacts`` object the real server sends (server/results.py): planted_feet of the float32 joints."""
    planted = kinematics.planted_feet(np.asarray(motion, "<f4").astype(np.float64))
    per_joint = {name: planted[:, i].tolist() for i, name in enumerate(kinematics.FOOT_JOINTS)}
    return {"left": (planted[:, 0] | planted[:, 1]).tolist(), "right": (planted[:, 2] | planted[:, 3]).tolist(),
            "per_joint": per_joint, "speed_mps": kinematics.PLANTED_SPEED_MPS, "height_m": kinematics.PLANTED_HEIGHT_M,
            "rule": "planted_feet"}


class FakeServer:
    """A loopback protocol-v1 stand-in: hello, generate (progress, result), cancel. Records requests.

    Every motion it returns is ``motion`` (F, 22, 3), with ``foot_contacts`` like the real server's
    unless ``contacts`` is False (a server that sends none); with ``hold`` set, generate waits for a
    cancel instead of answering.
    """

    def __init__(self, motion: np.ndarray, steps: int = 3):
        self.motion, self.steps, self.hold, self.contacts = motion, steps, False, True
        self.requests: list[dict] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        send = lambda obj: conn.sendall(json.dumps(obj).encode() + b"\n")
        held: list = []
        for raw in reader:
            req = json.loads(raw)
            self.requests.append(req)
            op, rid = req.get("op"), req.get("id")
            if op == "hello":
                send({"id": rid, "event": "hello", "protocol": 1, "server_version": "fake-0", "device": "cpu",
                      "model": {"name": "fake", "fps": 20, "joints": 22, "max_frames": 196}})
            elif op == "generate" and self.hold:
                send({"id": rid, "event": "accepted", "position": 0})
                send({"id": rid, "event": "progress", "step": 1, "total": self.steps, "eta_s": 5.0})
                held.append(rid)
            elif op == "generate":
                self._generate(send, req)
            elif op == "cancel":
                target = req.get("target")
                send({"id": rid, "event": "cancel", "target": target, "found": target in held})
                if target in held:
                    held.remove(target)
                    send({"id": target, "event": "error", "code": "cancelled", "message": "generation cancelled"})
        conn.close()

    def _generate(self, send, req: dict) -> None:
        rid = req["id"]
        send({"id": rid, "event": "accepted", "position": 0})
        for step in range(1, self.steps + 1):
            send({"id": rid, "event": "progress", "step": step, "total": self.steps, "eta_s": 0.1 * (self.steps - step)})
        prompts = req.get("prompts") or [req["prompt"]]
        frames = int(round(req["seconds"] * 20)) if "seconds" in req else req.get("frames", 80)
        motion = self.motion[:frames]
        extra = {"foot_contacts": foot_contacts(motion)} if self.contacts else {}
        motions = [{"prompt": p, "seed": req.get("seed", 0) + s, "fps": 20, "joints": encode(motion), **extra}
                   for p in prompts for s in range(req.get("samples", 1))]
        send({"id": rid, "event": "result", "motions": motions, "timing": {"total_s": 0.01}})
