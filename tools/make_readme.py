#!/usr/bin/env python3
"""Render README.md from nbs/index.ipynb (Quarto, which `nbdev-readme` needs, cannot be installed here).

Markdown cells are copied; code cells become ```python blocks; cells starting with `#| hide` are
dropped, and text outputs of shown cells are kept as ``` blocks. Run: `make readme`.
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
nb = json.loads((ROOT / "nbs" / "index.ipynb").read_text())
out = ["<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->", ""]
for cell in nb["cells"]:
    src = "".join(cell["source"]).rstrip()
    if not src or src.lstrip().startswith("#| hide") or src.lstrip().startswith("#|hide"):
        continue
    if cell["cell_type"] == "markdown":
        out += [src, ""]
    elif cell["cell_type"] == "code":
        lines = [l for l in src.splitlines() if not l.startswith("#|")]
        out += ["```python", *lines, "```", ""]
        for o in cell.get("outputs", []):
            text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
            if text.strip():
                out += ["```", text.rstrip(), "```", ""]
(ROOT / "README.md").write_text("\n".join(out).rstrip() + "\n")
