"""The package's import graph flows one way: from the teaching support down to the core, with no circle.

``python tests/test_architecture.py`` prints the graph, layer by layer (CONTRIBUTING.md's "Architecture").
Every import counts, also the ones inside a function: a lazy import hides a circle, it does not remove it.
"""

from __future__ import annotations

import ast
import itertools
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lora_edu"

# Lowest layer first. A module may import from its own layer or a lower one, never from a higher one.
LAYERS = {
    "foundations": ("runtime", "config", "files", "lowrank", "quant", "pretrained", "model_cache", "hub_standin"),
    "lora": ("layers", "model", "io", "merging", "qlora", "loraplus", "memory", "serving", "vllm_limits"),
    "training": ("chat", "data", "noise", "newlang", "distributed", "evaluation", "training", "baselines", "toy"),
    "teaching": ("experiments", "recipes", "sweeps", "updates", "cli", "viz", "exercises", "notebook_meta"),
}
LAYER_OF = {unit: rank for rank, units in enumerate(LAYERS.values()) for unit in units}


def units() -> list[str]:
    """The package's top-level modules and subpackages (``quant``, ``viz``, ``exercises`` are one unit each)."""
    names = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    names += [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    return sorted(names)


def _unit_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path) -> tuple[set[str], list[str]]:
    """(units of lora_edu that ``path`` imports, imports of the package's ``__init__`` itself)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    depth_of_file = len(path.relative_to(PACKAGE).parts) - 1  # 0 for lora_edu/x.py, 1 for lora_edu/viz/x.py
    found, from_init = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "lora_edu":
                    continue
                rest = parts[1:]
            else:
                up = node.level - 1  # "." is the file's own package
                if up > depth_of_file:
                    continue
                inside = _unit_of(path) if depth_of_file and up == 0 else None
                rest = ([inside] if inside else []) + (node.module.split(".") if node.module else [])
            if rest:
                found.add(rest[0])
            else:  # "from lora_edu import x" / "from . import x" at the top of the package
                for alias in node.names:
                    if (PACKAGE / f"{alias.name}.py").is_file() or (PACKAGE / alias.name).is_dir():
                        found.add(alias.name)
                    else:
                        from_init.append(alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lora_edu" and len(parts) > 1:
                    found.add(parts[1])
    return found, from_init


def import_graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """unit -> the other units it imports; unit -> names it takes from ``lora_edu/__init__``."""
    graph, from_init = {u: set() for u in units()}, {}
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue
        unit = _unit_of(path)
        found, init_names = _imported_units(path)
        graph[unit] |= found - {unit}
        if init_names:
            from_init.setdefault(unit, []).extend(init_names)
    return graph, from_init


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                return stack[stack.index(v):] + [v]
            if v not in state and (cycle := visit(v)):
                return cycle
        state[u] = "done"
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state and (cycle := visit(u)):
            return cycle
    return None


def edit_distance_at_most_one(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def test_every_unit_has_a_layer():
    missing = [u for u in units() if u not in LAYER_OF]
    assert not missing, f"{missing} belong to no layer: add them to LAYERS here and to CONTRIBUTING.md"
    gone = [u for u in LAYER_OF if u not in units()]
    assert not gone, f"LAYERS names {gone}, which are not in lora_edu/"


def test_no_import_circle():
    assert find_cycle(import_graph()[0]) is None, f"import circle: {' -> '.join(find_cycle(import_graph()[0]))}"


def test_imports_flow_down_the_layers():
    names = list(LAYERS)
    upward = [f"{u} ({names[LAYER_OF[u]]}) imports {v} ({names[LAYER_OF[v]]})"
              for u, deps in import_graph()[0].items() for v in deps if LAYER_OF[v] > LAYER_OF[u]]
    assert not upward, upward


def test_no_module_imports_the_package_facade():
    # `from . import train` inside the package would import lora_edu/__init__, i.e. every module at once.
    assert not import_graph()[1], import_graph()[1]


def test_no_two_module_names_one_character_apart():
    names = [p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"] + units()
    close = sorted({tuple(sorted(p)) for p in itertools.combinations(set(names), 2) if edit_distance_at_most_one(*p)})
    assert not close, f"module names one character apart: {close}"


def test_the_library_never_unpickles():
    """README's Guarantees: nothing in lora_edu calls torch.load or pickle, and every model load through
    transformers asks for safetensors (use_safetensors=True, so no pickled .bin is ever read)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{path.name}: import {n}" for n in names if n.split(".")[0] in ("pickle", "dill")]
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = ast.unparse(node.func.value)
            if node.func.attr == "load" and owner in ("torch", "pickle"):
                found.append(f"{path.name}:{node.lineno}: {owner}.load")
            if node.func.attr == "from_pretrained" and "ForCausalLM" in owner:
                safe = any(k.arg == "use_safetensors" and ast.unparse(k.value) == "True" for k in node.keywords)
                if not safe and not any(k.arg == "gguf_file" for k in node.keywords):  # GGUF: no pickle
                    found.append(f"{path.name}:{node.lineno}: {owner}.from_pretrained without use_safetensors")
    assert not found, found


def test_the_checker_sees_a_circle_and_a_near_name():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert edit_distance_at_most_one("model", "models") and edit_distance_at_most_one("nf4", "nf5")
    assert not edit_distance_at_most_one("model", "pretrained")


if __name__ == "__main__":
    graph = import_graph()[0]
    for name, members in reversed(LAYERS.items()):
        print(f"{name}:")
        for u in members:
            print(f"  {u:<14} -> {', '.join(sorted(graph[u])) or '(nothing in lora_edu)'}")
    cycle = find_cycle(graph)
    print("no import circle" if cycle is None else f"CIRCLE: {' -> '.join(cycle)}")
    sys.exit(cycle is not None)
