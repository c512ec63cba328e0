"""The package's layout: wings whose imports run one way, toward ``core``, with no import cycles.

Every import counts, at module level or inside a function, absolute or relative, ``TYPE_CHECKING`` included.
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ivt_lib"
# floors, lowest first: a module may import its own wing or a wing below it
WINGS = ("core", "configs", "corpora", "embedded", "training", "analysis", "reproduction")


def module_name(path: Path, pkg: Path = PKG) -> str:
    rel = path.relative_to(pkg.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, known: set[str], pkg: Path = PKG) -> set[str]:
    """The ``ivt_lib`` modules (or packages) that ``path`` imports, resolved to names in ``known``."""
    me = module_name(path, pkg)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
            if node.level and not node.module:  # `from . import x` first runs the package's own __init__
                targets.append(mod)
        else:
            continue
        for t in targets:
            while t and t not in known:  # `ivt_lib.core.loop.run_loop` -> ivt_lib.core.loop
                t = t.rpartition(".")[0]
            if t and t != me:
                out.add(t)
    return out


def graph(pkg: Path = PKG) -> dict[str, set[str]]:
    files = sorted(pkg.rglob("*.py"))
    known = {module_name(p, pkg) for p in files}
    return {module_name(p, pkg): imports_of(p, known, pkg) for p in files}


def wing(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else None


def upward(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a lower wing to a higher one (the top-level ``ivt_lib`` package may import core only)."""
    bad = []
    for src, dsts in g.items():
        for dst in dsts:
            ws, wd = wing(src), wing(dst)
            if ws is None:
                ok = wd == "core"
            elif wd is None:
                ok = dst == "ivt_lib"  # the package itself (its __init__ only applies the compat shim)
            else:
                ok = WINGS.index(wd) <= WINGS.index(ws)
            if not ok:
                bad.append((src, dst))
    return sorted(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_sits_in_a_wing():
    g = graph()
    stray = [m for m in g if m != "ivt_lib" and wing(m) not in WINGS]
    assert not stray, f"modules outside the wings {WINGS}: {stray}"


def test_imports_run_toward_core():
    assert upward(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_wing_docstrings_say_what_they_hold_and_may_import():
    for w in WINGS:
        doc = ast.get_docstring(ast.parse((PKG / w / "__init__.py").read_text()))
        assert doc and "import" in doc, w


@pytest.fixture
def planted(tmp_path):
    """A copy of the package's import skeleton (each module's source), to plant bad imports in."""
    dst = tmp_path / "ivt_lib"
    for p in PKG.rglob("*.py"):
        q = dst / p.relative_to(PKG)
        q.parent.mkdir(parents=True, exist_ok=True)
        q.write_text(p.read_text())
    return dst


def test_a_planted_upward_import_is_caught(planted):
    assert upward(graph(planted)) == []
    f = planted / "core" / "boxes.py"
    f.write_text(f.read_text() + "\n\ndef _late():\n    from ..training import grpo  # noqa: F401\n")
    assert ("ivt_lib.core.boxes", "ivt_lib.training.grpo") in upward(graph(planted))


def test_a_sibling_import_through_a_reexporting_package_is_a_cycle(planted):
    f = planted / "configs" / "tiers.py"  # configs/__init__ imports tiers; tiers importing `from . import` closes it
    f.write_text(f.read_text() + "\n\nif False:\n    from . import base  # noqa: F401\n")
    assert any({"ivt_lib.configs", "ivt_lib.configs.tiers"} <= set(c) for c in cycles(graph(planted)))


def test_a_planted_cycle_is_caught(planted):
    assert cycles(graph(planted)) == []
    # parsing imports boxes already; make boxes import parsing back
    b = planted / "core" / "boxes.py"
    b.write_text(b.read_text() + "\n\nif False:\n    from . import parsing  # noqa: F401\n")
    assert any({"ivt_lib.core.boxes", "ivt_lib.core.parsing"} <= set(c) for c in cycles(graph(planted)))
