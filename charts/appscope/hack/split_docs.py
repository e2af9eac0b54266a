"""Split a multi-document YAML file into one JSON file per object.

Usage: split_docs.py FILE OUTDIR
Prints "<Kind> <path>" per object, for the chart checks to validate each one.
"""
import json
import os
import sys

import yaml


def main() -> int:
    path, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    base = os.path.splitext(os.path.basename(path))[0]
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if not docs:
        print(f"split_docs.py: {path} holds no object", file=sys.stderr)
        return 1
    for i, doc in enumerate(docs):
        kind = doc.get("kind") or "Unknown"
        out = os.path.join(outdir, f"{base}-{i}-{kind}.json")
        with open(out, "w") as f:
            json.dump(doc, f)
        print(kind, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
