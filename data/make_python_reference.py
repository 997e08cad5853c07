"""Rebuild data/python-reference.jsonl from the CPython standard library's own copy of its reference docs.

Source: `pydoc_data.topics` (ships with every CPython; the text of the Python Language Reference and
Library Reference topics that `help()` shows). Licence: PSF License Agreement (Python Software Foundation).
Two topics are left out because they are unions of the others ("compound", "specialnames").

    python data/make_python_reference.py   # writes data/python-reference.jsonl
"""
import json
import os
import re
import sys

from pydoc_data.topics import topics

SKIP = {"compound", "specialnames"}  # concatenations of other topics: would duplicate passages


def main(out_path=os.path.join(os.path.dirname(__file__), "python-reference.jsonl")):
    rows = []
    for name in sorted(topics):
        if name in SKIP:
            continue
        text = topics[name].strip()
        # The first line is the topic title, underlined with asterisks.
        lines = text.splitlines()
        title = lines[0].strip()
        if len(lines) > 1 and re.fullmatch(r"\*+", lines[1].strip()):
            text = "\n".join(lines[2:]).strip()
        rows.append({"id": name, "title": title, "text": text})
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out_path)
    print(f"{len(rows)} documents from Python {sys.version.split()[0]} -> {out_path}")


if __name__ == "__main__":
    main()
