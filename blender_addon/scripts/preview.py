"""Pictures of baked armatures, rendered headlessly: a strip (one row per armature, a few frames side by side)
and the frames of an animation of the scene.

Armatures do not render, so for the strip every chosen frame becomes a
static mesh of the *evaluated* scene (what Blender plays back, not the
retargeter's own numbers): the armature's body (the add-on's mannequin or a
SMPL body, with its materials' colours) when it has one, else Blender-style
octahedral bones, left blue, right red, the rest grey (the stick-figure GIFs'
colours).  Each row is rendered on its own, labels above the figures, and the
rows are stacked into one PNG.  ``render_animation`` renders the scene itself
every few frames with a fixed camera, one PNG per frame.

Engines: Workbench (default: OpenGL, which the ``bpy`` module runs headless
through EGL and Mesa's software renderer; seconds per picture), or Cycles on
the CPU (a shadow-catcher floor on a transparent film, composited onto
white; about a minute per picture on 2 cores).  Uses bpy and numpy only, so it
runs in Blender's own Python or in the ``bpy`` module.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

COLOURS = {"left": (0.10, 0.30, 0.85, 1.0), "right": (0.85, 0.15, 0.10, 1.0), "centre": (0.55, 0.55, 0.58, 1.0),
           "text": (0.05, 0.05, 0.05, 1.0)}
SIDES = ("left", "right", "centre")
ELEVATION, AZIMUTH = np.radians(10.0), np.radians(-35.0)
PREVIEW_SCENE = "ReAlign preview"


ENGINES = {"workbench": "BLENDER_WORKBENCH", "cycles": "CYCLES"}
FLOOR_COLOUR = (5.0, 5.0, 5.0, 1.0)  # Workbench's view-space studio light greys a grazed floor: 5 shows light grey
BODY_PROP = "realign_body"  # the add-on's body meshes carry it (body_objects.py)


@dataclass
class RenderSettings:
    """Picture width in pixels, engine ("workbench" or "cycles"), Cycles samples and denoising."""

    width: int = 1200
    samples: int = 16
    denoise: bool = True
    engine: str = "workbench"


@dataclass
class Row:
    """One armature's snapshots: label, motion times (s), triangle meshes' world vertices (per snapshot, (V, 3)),
    faces (F, 3), each face's colour (F,) as an index into ``palette`` (RGBA)."""

    label: str
    times: list[float]
    verts: list[np.ndarray]
    faces: np.ndarray
    colour: np.ndarray
    palette: list[tuple]


def camera_rotation() -> np.ndarray:
    """(3, 3) camera-to-world rotation of an elevated, slightly turned orthographic front view."""
    a, c = np.pi / 2 - ELEVATION, AZIMUTH
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx


def bone_sides(obj: bpy.types.Object) -> dict[str, str]:
    """Side of every bone from the stored bone map; unmapped bones take their parent's side."""
    mapping = json.loads(obj.get("realign_bone_map", "{}"))
    side = {bone: joint.split("_")[0] if joint.startswith(("left_", "right_")) else "centre"
            for joint, bone in mapping.items()}

    def find(bone) -> str:
        if bone.name not in side:
            side[bone.name] = find(bone.parent) if bone.parent else "centre"
        return side[bone.name]

    return {b.name: find(b) for b in obj.data.bones}


def octahedra(heads: np.ndarray, tails: np.ndarray, xs: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blender's octahedral bone shape for B bones (world (B, 3) each) -> vertices (6B, 3), faces (8B, 3)."""
    d = tails - heads
    length = np.linalg.norm(d, axis=1, keepdims=True)
    r = np.clip(0.1 * length, 0.008, 0.035)
    ring = heads + 0.15 * d
    verts = np.stack([heads, ring + r * xs, ring + r * zs, ring - r * xs, ring - r * zs, tails], 1)
    quad = [(0, 2, 1), (0, 3, 2), (0, 4, 3), (0, 1, 4), (5, 1, 2), (5, 2, 3), (5, 3, 4), (5, 4, 1)]
    faces = np.array(quad)[None] + 6 * np.arange(len(heads))[:, None, None]
    return verts.reshape(-1, 3), faces.reshape(-1, 3)


def snapshot(obj: bpy.types.Object, frame: float, root: str) -> tuple[np.ndarray, np.ndarray]:
    """Evaluated bone octahedra of obj at a scene frame, moved so the root bone's head is above the origin."""
    scene = bpy.context.scene
    scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))
    mw = np.array(obj.matrix_world)
    mats = np.array([mw @ np.array(pb.matrix) for pb in obj.pose.bones])
    heads = mats[:, :3, 3]
    tails = np.array([(mw @ np.append(np.array(pb.tail), 1.0))[:3] for pb in obj.pose.bones])
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    verts, faces = octahedra(heads, tails, unit(mats[:, :3, 0]), unit(mats[:, :3, 2]))
    centre = heads[obj.pose.bones.find(root)].copy()
    centre[2] = 0.0
    return verts - centre, faces


def body_mesh(obj: bpy.types.Object) -> bpy.types.Object | None:
    """The armature's body mesh (the add-on's mannequin or SMPL body), if any."""
    return next((c for c in obj.children if c.type == "MESH" and c.get(BODY_PROP)), None)


def body_snapshot(body: bpy.types.Object, frame: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World vertices (V, 3), triangles (F, 3) and material slots (F,) of the evaluated body at a scene frame."""
    scene = bpy.context.scene
    scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))
    evaluated = body.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        slots = np.empty(len(mesh.loop_triangles), np.int64)
        mesh.loop_triangles.foreach_get("material_index", slots)
    finally:
        evaluated.to_mesh_clear()
    mw = np.array(evaluated.matrix_world)
    return co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3], tris.reshape(-1, 3), slots


def make_row(obj: bpy.types.Object, label: str, frames: list[float], times: list[float], root: str) -> Row:
    """Snapshots of one baked armature at the given scene frames: its body when it has one, else its bones;
    each moved so the root bone's head is above the origin."""
    body = body_mesh(obj)
    centres = []
    for f in frames:
        bpy.context.scene.frame_set(int(np.floor(f)), subframe=float(f - np.floor(f)))
        centre = (np.array(obj.matrix_world) @ np.append(np.array(obj.pose.bones[root].head), 1.0))[:3]
        centres.append(centre * [1.0, 1.0, 0.0])
    if body is not None:
        shots = [body_snapshot(body, f) for f in frames]
        palette = [tuple(m.diffuse_color) if m else COLOURS["centre"] for m in body.data.materials] or \
            [COLOURS["centre"]]
        verts = [v - c for (v, _, _), c in zip(shots, centres)]
        return Row(label, list(times), verts, shots[0][1], np.minimum(shots[0][2], len(palette) - 1), palette)
    sides = bone_sides(obj)
    side_of_bone = np.array([SIDES.index(sides[pb.name]) for pb in obj.pose.bones])
    shots = [snapshot(obj, f, root) for f in frames]
    return Row(label, list(times), [v for v, _ in shots], shots[0][1], np.repeat(side_of_bone, 8),
               [COLOURS[s] for s in SIDES])


def layout(rows: list[Row], gap: float = 0.25) -> float:
    """Spread every row's snapshots along the camera's horizontal axis (in place); returns the spacing."""
    right = camera_rotation()[:, 0]
    width = max(np.ptp(v @ right) for row in rows for v in row.verts)
    spacing = width + gap
    for row in rows:
        n = len(row.verts)
        row.verts = [v + (k - (n - 1) / 2) * spacing * right for k, v in enumerate(row.verts)]
    return spacing


def material(name: str, colour: tuple) -> bpy.types.Material:
    """A Principled BSDF material of a base colour."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = colour
    bsdf.inputs["Roughness"].default_value = 0.6
    mat.diffuse_color = colour
    return mat


def mesh_object(scene: bpy.types.Scene, name: str, verts: np.ndarray, faces: np.ndarray,
                mat_index: np.ndarray, mats: list) -> bpy.types.Object:
    """A flat-shaded mesh object linked into scene, faces assigned to materials."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts.tolist(), [], faces.tolist())
    for m in mats:
        mesh.materials.append(m)
    mesh.polygons.foreach_set("material_index", mat_index.astype(np.int32))
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def text_object(scene: bpy.types.Scene, body: str, location, size: float, align: str, mat) -> bpy.types.Object:
    """A text object facing the camera."""
    curve = bpy.data.curves.new(body[:40], "FONT")
    curve.body, curve.size, curve.align_x = body, size, align
    curve.materials.append(mat)
    obj = bpy.data.objects.new(body[:40], curve)
    obj.location = tuple(location)
    obj.rotation_euler = (np.pi / 2 - ELEVATION, 0.0, AZIMUTH)
    obj.visible_shadow = False
    scene.collection.objects.link(obj)
    return obj


def row_objects(scene: bpy.types.Scene, row: Row, top: float, left: np.ndarray, mats: dict,
                engine: str) -> list:
    """The row's snapshot meshes, floor and labels; returns the objects. The floor catches shadows only
    (Cycles) or is a light grey plane (Workbench)."""
    objs = []
    palette = [material(f"{row.label} {i}", colour) for i, colour in enumerate(row.palette)]
    for k, v in enumerate(row.verts):
        obj = mesh_object(scene, f"{row.label} {k}", v, row.faces, row.colour, palette)
        obj.data.polygons.foreach_set("use_smooth", np.ones(len(row.faces), bool))
        objs.append(obj)
        base = v.mean(0)
        objs.append(text_object(scene, f"{row.times[k]:.1f} s", (base[0], base[1], top + 0.1), 0.13, "CENTER",
                                mats["text"]))
    objs.append(text_object(scene, row.label, (left[0], left[1], top + 0.35), 0.17, "LEFT", mats["text"]))
    objs.append(floor_object(scene, f"{row.label} floor", np.concatenate(row.verts), mats, engine))
    return objs


def floor_object(scene: bpy.types.Scene, name: str, points: np.ndarray, mats: dict, engine: str,
                 margin: float = 0.35) -> bpy.types.Object:
    """A floor under the lowest of ``points`` (N, 3): for Cycles a large shadow catcher, for Workbench a light
    grey stage spanning the points' ground extent plus ``margin`` metres."""
    right = camera_rotation()[:, 0]  # horizontal
    depth = np.cross([0.0, 0.0, 1.0], right)
    along, across = points @ right, points @ depth
    pad = 30.0 if engine == "cycles" else margin
    corners = [(along.min() - pad, across.min() - pad), (along.max() + pad, across.min() - pad),
               (along.max() + pad, across.max() + pad), (along.min() - pad, across.max() + pad)]
    quad = np.array([a * right + c * depth for a, c in corners])
    quad[:, 2] = points[:, 2].min() - 0.002
    floor = mesh_object(scene, name, quad, np.array([[0, 1, 2, 3]]), np.zeros(1), [mats["floor"]])
    floor.is_shadow_catcher = engine == "cycles"
    return floor


def setup_workbench(scene: bpy.types.Scene) -> None:
    """Workbench: studio light, material colours, cast shadows, a transparent film, standard view transform."""
    scene.render.engine = ENGINES["workbench"]
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", "MATERIAL"
    shading.show_shadows, shading.shadow_intensity = True, 0.35
    shading.show_cavity = False
    scene.display.light_direction = (0.45, -0.35, 0.82)
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"


def preview_scene(settings: RenderSettings) -> tuple[bpy.types.Scene, bpy.types.Object]:
    """A new scene for the strip with an ortho camera: Workbench (see ``setup_workbench``), or Cycles on the
    CPU with a transparent film, a white sky light and a sun."""
    scene = bpy.data.scenes.new(PREVIEW_SCENE)
    if settings.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {settings.engine!r}")
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.type, camera.data.clip_end = "ORTHO", 200.0
    camera.rotation_euler = (np.pi / 2 - ELEVATION, 0.0, AZIMUTH)
    scene.collection.objects.link(camera)
    scene.camera = camera
    if settings.engine == "workbench":
        setup_workbench(scene)
        return scene, camera
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device, cycles.samples, cycles.seed = "CPU", settings.samples, 0
    cycles.use_adaptive_sampling, cycles.use_denoising = False, settings.denoise
    cycles.denoising_quality, cycles.denoising_prefilter = "FAST", "FAST"  # OIDN's high quality is slow on a CPU
    cycles.max_bounces, cycles.diffuse_bounces = 2, 1
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"
    scene.world = bpy.data.worlds.new(PREVIEW_SCENE)
    scene.world.use_nodes = True
    background = scene.world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value, background.inputs["Strength"].default_value = (1, 1, 1, 1), 0.7
    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy, sun.data.angle = 3.0, np.radians(2.0)
    sun.rotation_euler = (np.radians(35.0), 0.0, np.radians(-30.0))
    scene.collection.objects.link(sun)
    return scene, camera


def frame_camera(scene: bpy.types.Scene, camera: bpy.types.Object, points: np.ndarray, width_px: int,
                 margin: float = 0.12) -> None:
    """Aim the orthographic camera at points (N, 3) with a margin; the picture's height follows."""
    rot = camera_rotation()
    local = points @ rot
    lo, hi = local.min(0) - margin, local.max(0) + margin
    centre = (lo + hi) / 2
    centre[2] = hi[2] + 50.0
    camera.location = tuple(rot @ centre)
    w, h = hi[0] - lo[0], hi[1] - lo[1]
    camera.data.ortho_scale = max(w, h)
    scene.render.resolution_x, scene.render.resolution_y = width_px, max(16, int(round(width_px * h / w)))
    scene.render.resolution_percentage = 100


def label_anchor(rows: list[Row]) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """Common top height, the row label's left anchor, and extra points the framing must include."""
    right = camera_rotation()[:, 0]
    allv = np.concatenate([v for row in rows for v in row.verts])
    top = float(allv[:, 2].max())
    left = right * float((allv @ right).min())
    longest = max(len(row.label) for row in rows)
    extra = [left + [0, 0, top + 0.55], left + right * 0.1 * longest + [0, 0, top + 0.55]]
    return top, left, extra


def read_pixels(path: Path) -> np.ndarray:
    """An image file's pixels (H, W, 4) float, bottom row first (Blender's order)."""
    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)


def write_png(pixels: np.ndarray, path: Path) -> None:
    """Save (H, W, 4) float pixels, bottom row first, as an 8-bit RGB PNG."""
    h, w = pixels.shape[:2]
    img = bpy.data.images.new(path.stem, w, h, alpha=False)
    img.pixels.foreach_set(np.ascontiguousarray(pixels, np.float32).ravel())
    img.filepath_raw, img.file_format = str(path), "PNG"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save()
    bpy.data.images.remove(img)


def render_rows(scene: bpy.types.Scene, groups: list[list], folder: Path) -> list[np.ndarray]:
    """Render each group of objects alone; returns their pixels composited onto white."""
    out = []
    for i, group in enumerate(groups):
        for j, objs in enumerate(groups):
            for obj in objs:
                obj.hide_render = i != j
        scene.render.filepath = str(folder / f"row{i}.png")
        bpy.ops.render.render(write_still=True, scene=scene.name)
        px = read_pixels(folder / f"row{i}.png")
        rgb = px[..., :3] * px[..., 3:] + (1.0 - px[..., 3:])
        out.append(np.concatenate([rgb, np.ones_like(px[..., 3:])], -1))
    return out


def render_preview(rows: list[Row], png: Path, settings: RenderSettings | None = None) -> Path:
    """Render the rows (one picture each, same camera) and stack them, top row first, into png."""
    settings = settings or RenderSettings()
    layout(rows)
    top, left, extra = label_anchor(rows)
    scene, camera = preview_scene(settings)
    mats = {name: material(f"ReAlign {name}", colour) for name, colour in COLOURS.items()}
    mats["floor"] = material("ReAlign floor", FLOOR_COLOUR if settings.engine == "workbench" else COLOURS["centre"])
    groups = [row_objects(scene, row, top, left, mats, settings.engine) for row in rows]
    points = np.concatenate([v for row in rows for v in row.verts] + [np.array(extra)])
    frame_camera(scene, camera, points, settings.width)
    with tempfile.TemporaryDirectory(prefix="realign-preview-") as tmp:
        images = render_rows(scene, groups, Path(tmp))
    write_png(np.concatenate(images[::-1], 0), Path(png))
    bpy.data.scenes.remove(scene)
    return Path(png)


def render_animation(rigs: list[tuple[bpy.types.Object, str]], folder: Path, frames: list[float],
                     width: int = 480) -> list[Path]:
    """Render the current scene with Workbench at the given scene frames, one RGBA PNG each (``frame_0000.png``,
    ... transparent background),
    through a fixed orthographic camera framing every armature's body over the whole motion, a light floor
    under the lowest foot and each rig's label above it. The camera, floor and labels are removed afterwards."""
    scene = bpy.context.scene
    bodies = [body_mesh(obj) for obj, _ in rigs]
    if any(b is None for b in bodies):
        raise ValueError("render_animation needs a body mesh on every armature (Add preview mannequin)")
    sampled = frames[:: max(1, len(frames) // 16)] + [frames[-1]]
    clouds = [np.concatenate([body_snapshot(b, f)[0][::5] for f in sampled]) for b in bodies]
    top = max(float(c[:, 2].max()) for c in clouds)
    mats = {"text": material("ReAlign text", COLOURS["text"]), "floor": material("ReAlign floor", FLOOR_COLOUR)}
    added = [floor_object(scene, "ReAlign floor", np.concatenate(clouds), mats, "workbench")]
    right = camera_rotation()[:, 0]
    labels = []
    for cloud, (_, label) in zip(clouds, rigs):
        centre = cloud.mean(0)
        added.append(text_object(scene, label, (centre[0], centre[1], top + 0.12), 0.09, "CENTER", mats["text"]))
        half = 0.025 * len(label)
        labels += [centre * [1, 1, 0] + [0, 0, top + 0.3] + k * half * right for k in (-1, 1)]
    camera = bpy.data.objects.new("ReAlign GIF camera", bpy.data.cameras.new("ReAlign GIF camera"))
    camera.data.type, camera.data.clip_end = "ORTHO", 200.0
    camera.rotation_euler = (np.pi / 2 - ELEVATION, 0.0, AZIMUTH)
    scene.collection.objects.link(camera)
    added.append(camera)
    previous_camera, scene.camera = scene.camera, camera
    setup_workbench(scene)
    frame_camera(scene, camera, np.concatenate(clouds + [np.array(labels)]), width, margin=0.08)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for i, f in enumerate(frames):
            scene.frame_set(int(np.floor(f)), subframe=float(f - np.floor(f)))
            scene.render.filepath = str(folder / f"frame_{i:04d}.png")
            bpy.ops.render.render(write_still=True)
            paths.append(Path(scene.render.filepath))
    finally:
        scene.camera = previous_camera
        for obj in added:
            bpy.data.objects.remove(obj)
    return paths
