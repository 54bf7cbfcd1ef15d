"""Write the JSON Schema of every result document (cfzoo.results.DOCUMENTS) into docs/schemas/.

Run after changing a type in cfzoo/results.py: python tools/json_schemas.py
(tests/test_schemas.py fails while the files differ from the types).
"""

from __future__ import annotations

import json
from pathlib import Path

from cfzoo.files import write_atomically
from cfzoo.results import DOCUMENTS, json_schema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def schema_text(name: str) -> str:
    return json.dumps(json_schema(name), indent=2) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for name in DOCUMENTS:
        path = write_atomically(
            SCHEMA_DIR / f"{name}.schema.json", lambda temporary, name=name: temporary.write_text(schema_text(name))
        )
        print(path.relative_to(SCHEMA_DIR.parent.parent))


if __name__ == "__main__":
    main()
