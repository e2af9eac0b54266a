"""Extract each CRD's openAPIV3Schema as a standalone JSON Schema: <outdir>/<Kind>.json.

Usage: crd_schemas.py OUTDIR CRD.yaml...
The schema gets apiVersion/kind/metadata properties added (a CRD's schema describes them
loosely), so that check-jsonschema also rejects a wrong apiVersion or kind in an example.
"""
import json
import os
import sys

import yaml


def main() -> int:
    outdir, files = sys.argv[1], sys.argv[2:]
    os.makedirs(outdir, exist_ok=True)
    n = 0
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                kind = spec["names"]["kind"]
                for ver in spec["versions"]:
                    if not ver.get("served", True):
                        continue
                    schema = dict(ver["schema"]["openAPIV3Schema"])
                    props = dict(schema.get("properties", {}))
                    props["apiVersion"] = {"const": f"{spec['group']}/{ver['name']}"}
                    props["kind"] = {"const": kind}
                    props["metadata"] = {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string", "minLength": 1}},
                    }
                    schema["properties"] = props
                    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
                    with open(os.path.join(outdir, f"{kind}.json"), "w") as out:
                        json.dump(schema, out, indent=1)
                    n += 1
    if n == 0:
        print(f"crd_schemas.py: no CustomResourceDefinition in {files}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
