"""The house rules of gateway/: every module sits in a layer package (or on a short named list
of the application shell), the import-linter contracts in pyproject.toml hold, and no module is
over 400 lines or function over 60."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"
LAYERS = ("domain", "crypto", "store", "memory", "services", "http", "api", "ui")
# the application shell: entry points, wiring and process-wide plumbing every layer may use
SHELL = {"__init__", "__main__", "app", "appkeys", "cli", "config", "metrics", "fleet_metrics", "pgembed",
         "progress", "aio", "supervisor", "client"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def modules():
    for f in sorted(GATEWAY.rglob("*.py")):
        yield f, f.relative_to(GATEWAY)


def test_every_module_sits_in_a_layer_or_the_shell():
    stray = [str(rel) for f, rel in modules()
             if not (len(rel.parts) > 1 and rel.parts[0] in LAYERS) and rel.parts[0].removesuffix(".py") not in SHELL]
    assert not stray, f"put these in a layer package (see ARCHITECTURE.md): {stray}"


def test_import_contracts():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("import-linter is not installed (it is a test dependency in pyproject.toml)")
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_modules_and_functions_stay_small():
    big = []
    for f, rel in modules():
        src = f.read_text()
        if src.count("\n") > MAX_MODULE_LINES:
            big.append(f"{rel}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    big.append(f"{rel}:{node.lineno} {node.name}(): {n} lines")
    assert not big, "split these: " + "; ".join(big)
