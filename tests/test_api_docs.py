"""docs/api.md's examples run as written, against the shipped models (a doctest of the markdown file)."""

import doctest
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_api_examples_run_as_documented():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that the example uses its legacy ONNX exporter
        result = doctest.testfile(
            str(DOCS / "api.md"), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False
        )
    assert result.attempted >= 30
    assert result.failed == 0


def test_contract_examples_run_as_documented():
    """docs/contract.md's conformance-check example (cfzoo.testing.check_detector on a shipped model)."""
    result = doctest.testfile(
        str(DOCS / "contract.md"), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.attempted >= 3 and result.failed == 0
