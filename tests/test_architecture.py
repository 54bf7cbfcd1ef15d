"""The layers of ../shared/DESIGN.md hold: import-linter's contracts in pyproject.toml are all kept, and the structure
drawing (docs/structure.md) is current and has no arrow pointing up a layer."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def run_lint(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_every_layer_contract_is_kept():
    result = run_lint(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout and "the package root" in result.stdout


def test_a_contract_that_the_code_breaks_is_reported(tmp_path):
    """The check reads the real imports: forbidding one that exists (ops scores through the zoo) fails."""
    config = tmp_path / "broken.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "cfzoo"\n\n'
        '[[tool.importlinter.contracts]]\nname = "ops without the zoo"\ntype = "forbidden"\n'
        'source_modules = ["cfzoo.ops"]\nforbidden_modules = ["cfzoo.zoo"]\n'
    )
    result = run_lint(config)
    assert result.returncode == 1
    assert "ops without the zoo BROKEN" in result.stdout and "cfzoo.ops.scoring -> cfzoo.zoo.runtime" in result.stdout


def test_the_structure_drawing_is_current_and_no_arrow_points_up(load_tool):
    tool = load_tool("structure")
    found = tool.edges()
    assert ("cli", "ops") in found and ("ops", "zoo") in found and ("cfzoo", "api") in found
    assert tool.against_the_layers(found) == []
    assert (ROOT / "docs" / "structure.md").read_text() == tool.drawing(found), "run python tools/structure.py"
    # an arrow up a layer, or from a part no layer holds, is caught
    assert tool.against_the_layers([("zoo", "ops"), ("newpart", "zoo"), ("ops", "zoo")]) == [
        ("zoo", "ops"),
        ("newpart", "zoo"),
    ]
