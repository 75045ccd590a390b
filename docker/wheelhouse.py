"""Fill a wheelhouse for the Docker image: every wheel the image installs, for its platform and Python.

The list is derived from pyproject.toml (build-system requires + runtime dependencies), so a dependency
added there is in the next wheelhouse without anyone keeping a second list. torch is fetched first and
alone, and must be a CPU build (`+cpu`): the plain PyPI wheel for Linux brings gigabytes of CUDA.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path) -> list[str]:
    """The build-system requires and the runtime dependencies declared in `pyproject`."""
    with pyproject.open("rb") as handle:
        data = tomllib.load(handle)
    return [*data["build-system"]["requires"], *data["project"]["dependencies"]]


def platform_args(glibc_minor: int, python: str) -> list[str]:
    """pip's target options: CPython `python` on x86_64 Linux with glibc 2.`glibc_minor` or older.

    pip does not widen `manylinux_2_X` to older glibc versions by itself, so every version is listed.
    """
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc_minor, 16, -1)] + ["manylinux2014_x86_64"]
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    args += ["--abi", "cp" + python.replace(".", "")]
    for platform in platforms:
        args += ["--platform", platform]
    return args


def download(dest: Path, specs: list[str], target: list[str], extra: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest), *target, *extra, *specs]
    subprocess.run(command, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("wheels"))
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--torch", default="torch==2.13.0", help="the torch requirement (a CPU build)")
    parser.add_argument("--torch-index", default="", help="extra index holding CPU torch builds")
    parser.add_argument("--python", default="3.11", help="the image's Python version")
    parser.add_argument("--glibc-minor", type=int, default=36, help="the image's glibc is 2.N (bookworm: 36)")
    args = parser.parse_args()

    args.dest.mkdir(parents=True, exist_ok=True)
    target = platform_args(args.glibc_minor, args.python)
    torch_index = ["--extra-index-url", args.torch_index] if args.torch_index else []
    download(args.dest, [args.torch], target, ["--no-deps", *torch_index])
    builds = sorted(p.name for p in args.dest.glob("torch-*.whl"))
    if not builds or any("+cpu" not in b for b in builds):
        print(
            f"wheelhouse: {builds or 'no torch wheel'}: not all CPU builds; one would bring CUDA. "
            "Set TORCH_INDEX=https://download.pytorch.org/whl/cpu (make wheelhouse TORCH_INDEX=...)",
            file=sys.stderr,
        )
        return 1
    # The CPU torch just saved is found again through --find-links and wins (`+cpu` sorts above the plain build).
    download(args.dest, [args.torch, *requirements(args.pyproject)], target, ["--find-links", str(args.dest)])
    wheels = list(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"wheelhouse: {len(wheels)} wheels, {size:.0f} MiB in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
