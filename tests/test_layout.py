"""The package layout's rules, checked on the source: floors (no import points up), inference never
imports training/evaluation/CLI code, no oversized modules, the CLI's kinds come from the layout."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "realign_core"
MAX_LINES = 600

# Bottom floor first; a module may import from its own floor or below (realign_core/__init__ docstring).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("realign_core.motion", "realign_core.text", "realign_core.models", "realign_core.device"),
    ("realign_core.data", "realign_core.export", "realign_core.diffusion"),
    ("realign_core.guidance",),
    ("realign_core.pipeline",),
    ("realign_core.control",),
    ("realign_core.evaluation", "server", "realign_core.batch"),
    ("realign_core.training",),
    ("realign_core.cli",),
)
INFERENCE = ("realign_core.motion", "realign_core.text", "realign_core.models", "realign_core.device",
             "realign_core.diffusion", "realign_core.guidance", "realign_core.pipeline", "realign_core.export",
             "realign_core.control", "server")
NOT_AT_INFERENCE = ("realign_core.training", "realign_core.evaluation", "realign_core.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[Path]:
    return sorted([*CORE.rglob("*.py"), *(REPO / "server").rglob("*.py")])


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every realign_core/server module a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)   # `from pkg import module`
    return {m for m in found if m.split(".")[0] in ("realign_core", "server")}


def floor_of(module: str) -> int | None:
    for level, members in enumerate(FLOORS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return level
    return None


def known_module(name: str) -> bool:
    path = REPO / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_every_module_sits_on_a_floor():
    loose = [module_name(p) for p in source_files() if floor_of(module_name(p)) is None]
    assert set(loose) <= {"realign_core"}, loose


def test_no_import_points_up_and_inference_never_imports_training():
    upward, inference_to_training = [], []
    for path in source_files():
        me = module_name(path)
        for target in filter(known_module, imported_modules(path)):
            mine, theirs = floor_of(me), floor_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{me} -> {target}")
            if me.startswith(INFERENCE) and target.startswith(NOT_AT_INFERENCE):
                inference_to_training.append(f"{me} -> {target}")
    assert inference_to_training == []
    assert upward == []


@pytest.mark.parametrize("folder", ["realign_core", "server", "blender_addon"])
def test_no_source_module_is_oversized(folder):
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in (REPO / folder).rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}


def test_few_modules_loose_at_the_top_of_realign_core():
    loose = sorted(p.name for p in CORE.glob("*.py"))
    assert loose == ["__init__.py", "device.py", "pipeline.py"]


def test_the_rule_checker_sees_relative_and_module_imports(tmp_path):
    assert "realign_core.motion.skeleton" in imported_modules(CORE / "motion" / "kinematics.py")
    assert "realign_core.data.cmu" in imported_modules(CORE / "data" / "build.py")
    assert floor_of("realign_core.training.tasks.vae") > floor_of("realign_core.pipeline")
