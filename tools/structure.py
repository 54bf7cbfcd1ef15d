"""Draw cfzoo's structure: which part imports which, by layer, as a Mermaid flowchart in docs/structure.md.

The parts are the package root, its subpackages and its top-level modules; an arrow is "imports" (any module of one
part importing any module of the other, found statically by grimp, the graph library under import-linter). Layers
are drawn top to bottom in :data:`LAYERS`, an order consistent with every contract in pyproject.toml: the runtime
layers with the build side (the ``train`` extra) between the operations and the zoo, since it builds on the zoo and
core only and only the CLI uses it. tests/test_architecture.py checks that the file is current and that no arrow
points up a layer. Run after changing imports: python tools/structure.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
DRAWING = ROOT / "docs" / "structure.md"
PACKAGE = "cfzoo"
#: Layers from top to bottom; each part may import only parts in lower layers (and within its own layer, as the
#: contracts allow).
LAYERS = (
    ("package root", ("cfzoo",)),
    ("cli, api and testing", ("cli", "api", "testing", "__main__")),
    ("engines", ("engines",)),
    ("experiments", ("experiments",)),
    ("ops", ("ops",)),
    ("build side: cards", ("cards",)),
    ("build side: families", ("families",)),
    ("build side: export", ("export",)),
    ("build side: training", ("training",)),
    ("zoo", ("zoo",)),
    ("data and reports", ("data", "reports", "sample_data")),
    ("pixels and numbers", ("images", "manipulations", "patches", "metrics", "paper")),
    ("foundations", ("errors", "files", "paths", "callbacks", "results", "_version")),
)


def part_of(module: str) -> str:
    """``cfzoo.ops.detect`` -> ``ops``; the root package itself -> ``cfzoo``."""
    return module.split(".")[1] if "." in module else module


def rank() -> dict[str, int]:
    return {part: number for number, (_, parts) in enumerate(LAYERS) for part in parts}


def edges() -> list[tuple[str, str]]:
    """(importer, imported) between different parts, each once, sorted."""
    graph = grimp.build_graph(PACKAGE)
    found = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if part_of(module) != part_of(imported):
                found.add((part_of(module), part_of(imported)))
    return sorted(found)


def against_the_layers(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The arrows that point up a layer (or touch a part no layer holds)."""
    ranks = rank()
    return [
        (importer, imported)
        for importer, imported in found
        if importer not in ranks or imported not in ranks or ranks[importer] > ranks[imported]
    ]


def drawing(found: list[tuple[str, str]]) -> str:
    lines = [
        "# cfzoo's structure",
        "",
        "Which part of the package imports which, drawn by `python tools/structure.py` from the code (grimp, the",
        "import graph under import-linter). Layers run top to bottom; every arrow points down or within a layer",
        "(`tests/test_architecture.py` checks both that this drawing is current and that no arrow points up), and",
        "import-linter's contracts in `pyproject.toml` forbid the rest (the runtime never imports the build side).",
        "",
        "```mermaid",
        "flowchart TD",
    ]
    for number, (title, parts) in enumerate(LAYERS):
        lines.append(f'    subgraph layer{number}["{title}"]')
        lines.extend(f'        {_node(part)}["{part}"]' for part in parts)
        lines.append("    end")
    lines.extend(f"    {_node(importer)} --> {_node(imported)}" for importer, imported in found)
    lines += ["```", ""]
    return "\n".join(lines)


def _node(part: str) -> str:
    return "part_" + part.strip("_")


def main() -> int:
    found = edges()
    wrong = against_the_layers(found)
    if wrong:
        print("arrows against the layers: " + ", ".join(f"{a} -> {b}" for a, b in wrong), file=sys.stderr)
        return 1
    DRAWING.write_text(drawing(found))
    print(DRAWING.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
