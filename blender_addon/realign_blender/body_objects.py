"""Skinned body meshes in Blender: the mannequin on any mapped armature, and the mesh of a SMPL model.

A body is a mesh object parented to its armature, its vertices in the
armature's own space (so units and the object transform of, say, a Mixamo
rig apply to it as to the bones), one vertex group per bone with explicit
weights, and an Armature modifier: Blender's linear blend skinning moves it
with the pose, so every baked take plays on it.  Bodies carry the custom
property ``realign_body`` ("mannequin" or "smpl"); adding one replaces the
armature's earlier body of the same kind.
"""
from __future__ import annotations

import bpy
import numpy as np

from . import armature_io, bone_maps, smpl_body
from .mannequin import ACCENT, BODY, BodyMesh, mannequin_mesh
from .rotations import yup_to_blender
from .skeleton import JOINT_NAMES, NUM_JOINTS

BODY_PROP = "realign_body"
# Neutral mannequin colours (linear RGBA): a light wooden shell, darker joint balls and nose.
COLOURS = {BODY: (0.72, 0.56, 0.40, 1.0), ACCENT: (0.20, 0.14, 0.09, 1.0)}
SMPL_COLOUR = (0.55, 0.50, 0.46, 1.0)
WEIGHT_DECIMALS = 4  # weights are grouped by value when written (one vertex_group.add call per value)


def body_of(armature: bpy.types.Object, kind: str = "mannequin") -> bpy.types.Object | None:
    """The armature's body mesh of ``kind``, if it has one."""
    for child in armature.children:
        if child.type == "MESH" and child.get(BODY_PROP) == kind:
            return child
    return None


def armature_of(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The armature an object stands for: itself when it is one, the parent of a ReAlign body, else None."""
    if obj is None:
        return None
    if obj.type == "ARMATURE":
        return obj
    if obj.type == "MESH" and obj.get(BODY_PROP) and obj.parent is not None and obj.parent.type == "ARMATURE":
        return obj.parent
    return None


def rest_joints_of(armature: bpy.types.Object, mapping: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Armature-space rest heads (22, 3) of the bones mapped to the joints, and which joints are mapped (22,)."""
    joints, present = np.zeros((NUM_JOINTS, 3)), np.zeros(NUM_JOINTS, bool)
    for j, name in enumerate(JOINT_NAMES):
        bone = armature.data.bones.get(mapping.get(name, ""))
        if bone is not None:
            joints[j], present[j] = np.array(bone.head_local), True
    return joints, present


def material(name: str, colour: tuple) -> bpy.types.Material:
    """A material of one colour for every engine: Principled base colour and the viewport/Workbench colour."""
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    mat.diffuse_color = colour
    if bpy.app.version < (5, 0, 0) and not mat.use_nodes:  # 5.0: always node-based (use_nodes deprecated)
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = colour
        bsdf.inputs["Roughness"].default_value = 0.55
    return mat


def skinned_mesh(armature: bpy.types.Object, name: str, verts: np.ndarray, faces: list, weights: np.ndarray,
                 groups: list[str | None], materials: list, face_material: np.ndarray | None = None,
                 smooth: bool = True) -> bpy.types.Object:
    """A mesh object parented to ``armature`` with an Armature modifier.

    verts: (V, 3) armature space; faces: index lists; weights: (V, G) with column g written to vertex group
    ``groups[g]`` (None: skipped); face_material: (F,) material slot per face.
    """
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(np.asarray(verts, float).tolist(), [], faces)
    for mat in materials:
        mesh.materials.append(mat)
    if face_material is not None:
        mesh.polygons.foreach_set("material_index", np.asarray(face_material, np.int32))
    mesh.polygons.foreach_set("use_smooth", np.full(len(mesh.polygons), smooth, bool))
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    for collection in armature.users_collection or (bpy.context.scene.collection,):
        collection.objects.link(obj)
    obj.parent = armature  # matrix_parent_inverse stays identity: mesh space = armature space
    write_weights(obj, weights, groups)
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    return obj


def write_weights(obj: bpy.types.Object, weights: np.ndarray, groups: list[str | None]) -> None:
    """Vertex groups from a (V, G) weight matrix (zero weights are not written)."""
    weights = np.round(np.asarray(weights, float), WEIGHT_DECIMALS)
    for g, name in enumerate(groups):
        column = weights[:, g]
        if name is None or not column.any():
            continue
        group = obj.vertex_groups.get(name) or obj.vertex_groups.new(name=name)
        for value in np.unique(column[column > 0]):
            group.add(np.flatnonzero(column == value).tolist(), float(value), "REPLACE")


def remove_body(armature: bpy.types.Object, kind: str) -> None:
    """Delete the armature's body of ``kind`` (and its mesh data) if present."""
    old = body_of(armature, kind)
    if old is not None:
        mesh = old.data
        bpy.data.objects.remove(old)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)


def add_mannequin(armature: bpy.types.Object, mapping: dict[str, str] | None = None) -> bpy.types.Object:
    """Add (or rebuild) the mannequin of an armature, sized to its mapped bones' rest positions.

    mapping: joint -> bone (default: the armature's stored or detected bone map). Raises ValueError naming
    the joints a mannequin needs when the map lacks them.
    """
    mapping = mapping or armature_io.get_bone_map(armature)
    joints, present = rest_joints_of(armature, mapping)
    body: BodyMesh = mannequin_mesh(joints, present)
    remove_body(armature, "mannequin")
    mats = [material("ReAlign mannequin", COLOURS[BODY]), material("ReAlign mannequin joints", COLOURS[ACCENT])]
    groups = [mapping.get(name) if present[j] else None for j, name in enumerate(JOINT_NAMES)]
    obj = skinned_mesh(armature, f"{armature.name} mannequin"[:63], body.verts, body.face_lists(), body.weights,
                       groups, mats, body.material)
    obj[BODY_PROP] = "mannequin"
    return obj


def new_armature(context: bpy.types.Context, name: str, names, parents, heads: np.ndarray,
                 tails: np.ndarray) -> bpy.types.Object:
    """An armature object at the 3D cursor from bone names, parent indices (parents first), heads and tails
    (B, 3) armature space (zero roll); quaternion rotation mode; made active and selected."""
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    context.scene.collection.objects.link(obj)
    obj.location = context.scene.cursor.location
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for i, bone_name in enumerate(names):
        eb = arm.edit_bones.new(bone_name)
        eb.head, eb.tail = tuple(map(float, heads[i])), tuple(map(float, tails[i]))
        if parents[i] >= 0:
            eb.parent = arm.edit_bones[names[parents[i]]]
    bpy.ops.object.mode_set(mode="OBJECT")
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    obj.select_set(True)
    return obj


def add_smpl_body(context: bpy.types.Context, path: str, gender: str = "neutral",
                  betas: np.ndarray | None = None) -> bpy.types.Object:
    """An armature with SMPL's 24 bones at the model's regressed rest joints and the model's mesh skinned by
    its own weights (see ``smpl_body``); returns the armature (active; its bone map: the "smpl" preset).

    Raises ValueError / FileNotFoundError naming the file and what is wrong with it.
    """
    model = smpl_body.load_model(path, gender)
    verts, joints = smpl_body.shaped(model, betas)
    verts, joints = yup_to_blender(verts), yup_to_blender(joints)  # SMPL: Y up, facing +Z -> Blender Z up, -Y
    if context.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    for obj in context.selected_objects:
        obj.select_set(False)
    armature = new_armature(context, "SMPL Body", smpl_body.BONE_NAMES, smpl_body.PARENTS, joints,
                            smpl_body.bone_tails(joints))
    armature["realign_smpl_model"] = model.path
    _, mapping = bone_maps.detect_bone_map(list(smpl_body.BONE_NAMES))
    armature_io.set_bone_map(armature, mapping)
    mesh = skinned_mesh(armature, "SMPL Body mesh", verts, model.faces.tolist(), model.weights,
                        list(smpl_body.BONE_NAMES), [material("ReAlign SMPL skin", SMPL_COLOUR)])
    mesh[BODY_PROP] = "smpl"
    return armature
