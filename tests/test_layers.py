"""Import layers of ``mmsrarec_lib``, ``jobs`` and ``dags``: no cycles, no private names across modules, and
stages only import downward.

Every ``.py`` file is parsed with ``ast``; every import counts, at module level and inside functions (a lazy import
is still a dependency). Imports under ``if TYPE_CHECKING:`` are not run and do not count, and neither does the
implicit import of a parent package. ``importlib.import_module(NAME)`` with a constant module name counts too.

The layers, bottom to top (a module may import its own layer and the layers below it):

0. **foundation**: ``tables`` (the Delta table names), ``schemas``, ``runs``, ``pinning``, ``storage``, ``locks``,
   ``snapshots``, ``model_runs``, ``spark``, ``runtime_env`` (the warehouse, run identity and accounting, shared by
   every stage);
1. **ingest**: ``ingest``, ``vision`` (item images), ``mllm`` (model loading), ``eval`` harness (``metrics``,
   ``protocols``, ``paired``: pure evaluation that models train against);
2. **models**: ``models`` (every model, one file each: Pop, SASRec, the stage-3 backbone ``minilm_effnet``) with
   the evaluation ``eval.registry`` that trains and loads the baselines, and ``eval.report`` over its table;
3. **summarize** (stage 1);
4. **collab** (stage 2) and ``candidates`` (content candidate index, beside it);
5. **recommend** (stage 3);
6. **services**: ``orchestration``, ``maintenance``, ``sql``, ``testing`` (helpers of the edges, over any stage);
7. **jobs** (the CLI);
8. **dags** (Airflow).

Known violations in files that other work in progress owns are listed in ``ALLOWED_*``, each with why and how to
remove it; delete an entry when its import is gone (nothing new may be added without the same explanation).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mmsrarec_lib", "jobs", "dags")

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("mmsrarec_lib", "mmsrarec_lib.schemas", "mmsrarec_lib.runs", "mmsrarec_lib.pinning",
                    "mmsrarec_lib.storage", "mmsrarec_lib.locks", "mmsrarec_lib.snapshots", "mmsrarec_lib.model_runs",
                    "mmsrarec_lib.spark", "mmsrarec_lib.runtime_env", "mmsrarec_lib.tables")),
    ("ingest", ("mmsrarec_lib.ingest", "mmsrarec_lib.vision", "mmsrarec_lib.mllm", "mmsrarec_lib.eval")),
    ("models", ("mmsrarec_lib.models", "mmsrarec_lib.eval.registry", "mmsrarec_lib.eval.report")),
    ("summarize", ("mmsrarec_lib.summarize",)),
    ("collab", ("mmsrarec_lib.collab", "mmsrarec_lib.candidates")),
    ("recommend", ("mmsrarec_lib.recommend",)),
    ("services", ("mmsrarec_lib.orchestration", "mmsrarec_lib.maintenance", "mmsrarec_lib.sql",
                  "mmsrarec_lib.testing")),
    ("jobs", ("jobs",)),
    ("dags", ("dags",)),
)

# Import edges (importer, imported) left out of the cycle check (none: add one only with why and how to remove it).
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()
# (importer, imported module, name) of private imports still to remove (none).
ALLOWED_PRIVATE: set[tuple[str, str, str]] = set()
# Upward imports still to remove (none).
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                         or getattr(test, "attr", None) == "TYPE_CHECKING"):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (its nearest enclosing module), or None (third party)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import of ``module`` (see the module docstring)."""
    path = modules[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                 for t in n.targets if isinstance(t, ast.Name)}
    skip = _type_checking_nodes(tree)
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(target, None, node.lineno) for a in node.names if (target := _known(a.name, modules))]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{node.module}" if node.module else anchor
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # a submodule
                    out.append((f"{base}.{alias.name}", None, node.lineno))
                elif target := _known(base, modules):
                    out.append((target, alias.name, node.lineno))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args):
            arg = node.args[0]
            name = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""))
            if isinstance(name, str) and (target := _known(name, modules)):
                out.append((target, None, node.lineno))
    return [(target, name, line) for target, name, line in out if target != module]


def import_graph() -> dict[str, dict[str, int]]:
    modules = all_modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for m in modules:
        for target, _, line in imports_of(m, modules):
            graph[m].setdefault(target, line)
    return graph


def layer_of(module: str) -> int:
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = module.startswith(prefix + ".") and prefix != "mmsrarec_lib"  # the package itself only
            if (module == prefix or below) and len(prefix) > best:
                best, found = len(prefix), index
    if found is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return found


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    graph = import_graph()
    pruned = {a: {b: line for b, line in targets.items() if (a, b) not in ALLOWED_CYCLE_EDGES}
              for a, targets in graph.items()}
    cycles = _cycles(pruned)
    detail = ["  " + " ; ".join(f"{a} -> {b} (line {pruned[a][b]})" for a in c for b in pruned[a] if b in c)
              for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_no_private_names_imported_across_modules():
    modules = all_modules()
    found = {(m, target, name) for m in modules for target, name, _ in imports_of(m, modules)
             if name and name.startswith("_") and not name.startswith("__")}
    assert found <= ALLOWED_PRIVATE, f"private names imported from other modules: {sorted(found - ALLOWED_PRIVATE)}"


def test_stages_only_import_downward():
    graph = import_graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a)}
    names = [name for name, _ in LAYERS]
    detail = [f"{a} ({names[layer_of(a)]}) imports {b} ({names[layer_of(b)]}) at line {graph[a][b]}"
              for a, b in sorted(upward - ALLOWED_UPWARD)]
    assert not detail, "imports from a higher layer:\n" + "\n".join(detail)


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The parser itself: a function-level import is an edge, a TYPE_CHECKING import is not."""
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mmsrarec_lib.recommend import batch\n"
           "def f():\n    from mmsrarec_lib.collab import refresh\n"
           "    from mmsrarec_lib.storage import _s3_filesystem\n")
    (tmp_path / "probe.py").write_text(src)
    modules = {**all_modules(), "probe": tmp_path / "probe.py"}
    found = imports_of("probe", modules)
    assert ("mmsrarec_lib.collab.refresh", None, 5) in found
    assert ("mmsrarec_lib.storage", "_s3_filesystem", 6) in found
    assert not any(t == "mmsrarec_lib.recommend.batch" for t, _, _ in found)
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
