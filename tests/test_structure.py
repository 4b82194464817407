"""Two layers and one rule: the library never imports the harness that reproduces the paper, and no module of
adasmooth imports itself back through others (no import circle), inside functions included (read by ast)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "adasmooth"
# the harness: the notebooks' procedures, the pipeline and its profiles, the parameters' declarations and domains,
# notebook setup, README rendering, verdicts, results files, the shipped-model manifest, the app, the explorer and
# the CLI
HARNESS = ("experiments", "pipeline", "profiles", "parameters", "domains", "notebook", "readme", "verdicts", "results",
           "shipped", "app", "explorer", "__main__")


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the adasmooth modules it imports anywhere in its file (a name imported from a package counts
    as its submodule when one has that name, else as the package)."""
    edges = {}
    for mod, p in mods.items():
        pkg = mod.split(".") if p.name == "__init__.py" else mod.split(".")[:-1]
        out = set()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(pkg[:len(pkg) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                    else node.module or ""
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in mods else base)
        edges[mod] = {t for t in out if t in mods and t != mod}
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def is_harness(mod: str) -> bool:
    return any(mod == f"adasmooth.{h}" or mod.startswith(f"adasmooth.{h}.") for h in HARNESS)


def test_the_walker_sees_circles_and_package_relative_imports():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(edges) == [["a", "b", "c"]]
    mods = modules()
    assert "adasmooth.comparison.cached_run" in imports(mods)["adasmooth.comparison.convergence"]  # from .cached_run
    assert "adasmooth.statistics" in imports(mods)["adasmooth.comparison.convergence"]  # from ..statistics


def test_no_import_circle_anywhere_in_adasmooth():
    assert circles(imports(modules())) == []


def test_the_library_never_imports_the_harness():
    edges = imports(modules())
    up = sorted(f"{m} -> {t}" for m, ts in edges.items() if not is_harness(m) and m != "adasmooth"
                for t in ts if is_harness(t))
    assert up == []
