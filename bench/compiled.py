"""Run a benchmark on the compiled core: ``python -m bench.compiled NAME [ARGS...]``.

``make compiled`` builds ``build/compiled``: the wheel the image installs, with the modules
listed under ``[tool.churnguard] compiled`` in pyproject.toml compiled by mypyc. This puts
that build first on the import path and runs ``bench.NAME`` with ARGS, so
``python -m bench.compiled throughput`` measures what production runs. Worker subprocesses
of a benchmark import churnguard from where the benchmark itself does
(:func:`bench.throughput.core_root`). ``python -m bench.NAME`` measures the Python sources.
"""

from __future__ import annotations

import importlib
import runpy
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPILED = REPO_ROOT / "build" / "compiled"
STAMP = COMPILED / ".built"
SOURCES = ("schemas", "streams", "rules", "agents")


def compiled_modules() -> list[str]:
    """The dotted names of the modules the compiled build compiles."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        paths = tomllib.load(f)["tool"]["churnguard"]["compiled"]
    return [p.removesuffix(".py").replace("/", ".") for p in paths]


def python_modules() -> list[str]:
    """The modules of :func:`compiled_modules` that this process imports as Python."""
    return [
        m
        for m in compiled_modules()
        if not str(importlib.import_module(m).__file__).endswith(".so")
    ]


def core_root() -> Path:
    """Where this process imports churnguard from: ``build/compiled`` on the compiled core,
    else the repository. Worker subprocesses start there, so they run the same build."""
    import rules.engine

    return Path(rules.engine.__file__).resolve().parent.parent


def stale_reason() -> str | None:
    """Why ``build/compiled`` cannot stand for the sources, or None if it can.

    The sources are what the Makefile's CORE_SOURCES names: every file of the packages (code
    and package data), pyproject.toml and setup.py.
    """
    if not STAMP.exists():
        return f"{COMPILED.relative_to(REPO_ROOT)} is missing"
    built = STAMP.stat().st_mtime
    files = [REPO_ROOT / "pyproject.toml", REPO_ROOT / "setup.py"]
    for package in SOURCES:
        files.extend(
            p
            for p in (REPO_ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
    newer = sorted(str(p.relative_to(REPO_ROOT)) for p in files if p.stat().st_mtime > built)
    if newer:
        return f"{COMPILED.relative_to(REPO_ROOT)} is older than {', '.join(newer[:3])}"
    return None


def main() -> None:
    """Check the build, put it first on the import path, run the named benchmark."""
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        raise SystemExit(0 if len(sys.argv) >= 2 else 2)
    reason = stale_reason()
    if reason is not None:
        raise SystemExit(f"bench.compiled: {reason}: run `make compiled` first")
    name = sys.argv.pop(1)
    sys.argv[0] = f"bench.{name}"
    sys.path.insert(0, str(COMPILED))
    runpy.run_module(f"bench.{name}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
