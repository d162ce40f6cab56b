"""Keeps docs/ABI.md's quotes of vt/oppack.h identical to the header.

A quote in the markdown is written as

    <!-- quote oppack.h: "first line text" .. "last line text" -->
    ```c
    (filled in from the header: the first line containing "first line text" through the next
     line containing "last line text")
    ```
    <!-- end quote -->

    python opsdk/tools/abi_doc.py           # rewrite the quotes from the header
    python opsdk/tools/abi_doc.py --check   # exit 1 if any quote has drifted (for tests/CI)
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "opsdk" / "include" / "vt" / "oppack.h"
DOC = ROOT / "docs" / "ABI.md"
QUOTE = re.compile(
    r'(<!-- quote oppack\.h: "(?P<start>[^"]+)" \.\. "(?P<end>[^"]+)" -->\n)(?P<body>.*?)(<!-- end quote -->)',
    re.S)


def excerpt(header_lines: list[str], start: str, end: str) -> str:
    for i, line in enumerate(header_lines):
        if start in line:
            for j in range(i, len(header_lines)):
                if end in header_lines[j]:
                    return "\n".join(header_lines[i:j + 1])
            raise SystemExit(f"abi_doc: end text {end!r} not found after {start!r} in {HEADER}")
    raise SystemExit(f"abi_doc: start text {start!r} not found in {HEADER}")


def render(doc: str, header: str) -> str:
    lines = header.splitlines()

    def fill(m: re.Match) -> str:
        return m.group(1) + "```c\n" + excerpt(lines, m.group("start"), m.group("end")) + "\n```\n" + m.group(5)

    return QUOTE.sub(fill, doc)


def main(argv: list[str]) -> int:
    doc, header = DOC.read_text(), HEADER.read_text()
    new = render(doc, header)
    if "--check" in argv:
        if new != doc:
            print(f"abi_doc: {DOC} quotes differ from {HEADER}; run python opsdk/tools/abi_doc.py", file=sys.stderr)
            return 1
        print(f"abi_doc: {len(QUOTE.findall(doc))} quotes match the header")
        return 0
    if new != doc:
        DOC.write_text(new)
        print(f"abi_doc: updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
