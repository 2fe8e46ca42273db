"""The architecture holds: the import-linter contracts of pyproject.toml, no import cycle
anywhere (imports inside functions included), production functions that read in one screen,
and commands that load only what they use."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("registre", "events", "processors", "projections", "deploy")
MAX_FUNCTION_LINES = 60
HEAVY = ("psycopg", "kafka", "faust", "aiokafka", "fastavro")


def test_import_linter_contracts_are_kept() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _components(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {m: {i for i in graph.find_modules_directly_imported_by(m)
                if i.split(".")[0] in PACKAGES} for m in graph.modules}


def test_no_import_cycle_between_modules_or_packages() -> None:
    edges = _graph()
    assert _components(edges) == []
    packages: dict[str, set[str]] = {}
    for module, imported in edges.items():
        top = module.split(".")[0]
        packages.setdefault(top, set()).update(i.split(".")[0] for i in imported
                                               if i.split(".")[0] != top)
    assert _components(packages) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _components({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}",
             node.end_lineno - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_production_functions_read_in_one_screen() -> None:
    sources = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    long = [(name, n) for p in sources for name, n in _functions(p) if n > MAX_FUNCTION_LINES]
    assert long == []


def _modules_loaded_by(*args: str, home: Path) -> set[str]:
    probe = ("import sys\nfrom registre.cli import main\n"
             "try:\n    main(list(sys.argv[1:]))\nexcept SystemExit:\n    pass\n"
             f"print('LOADED:', *(m for m in {HEAVY!r} if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRE_")}
    env["REGISTRE_HOME"] = str(home)
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    loaded = [line for line in done.stdout.splitlines() if line.startswith("LOADED:")]
    assert loaded, done.stdout + done.stderr
    return set(loaded[-1].split()[1:])


def test_help_loads_no_client_library_and_info_no_faust(tmp_path: Path) -> None:
    assert _modules_loaded_by("--help", home=tmp_path) == set()
    assert _modules_loaded_by("audit", "consent", "--help", home=tmp_path) == set()
    assert "faust" not in _modules_loaded_by("info", home=tmp_path)
