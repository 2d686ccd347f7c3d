"""Write a generated markdown block into a doc between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers, so numbers in the docs always come from benchmark JSON."""

from __future__ import annotations

import re
from pathlib import Path


def write_block(doc: Path, name: str, markdown: str) -> None:
    text = doc.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{doc}: markers {start} / {end} not found")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    doc.write_text(pattern.sub(lambda _: f"{start}\n{markdown.strip()}\n{end}", text))
