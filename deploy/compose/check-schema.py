"""Validates compose.yaml against the Compose Specification's JSON schema (the copy that
the pinned npm package dclint ships; deploy/check.sh installs it into target/deploy-npm).
Also fails on a service that mounts a file of this folder that does not exist.

    python check-schema.py SCHEMA.json COMPOSE.yaml
"""

import os
import sys

import jsonschema
import yaml

schema_path, compose_path = sys.argv[1], sys.argv[2]
schema = yaml.safe_load(open(schema_path))
compose = yaml.safe_load(open(compose_path))  # YAML anchors and `<<` merges resolved
validator = jsonschema.Draft7Validator(schema)
errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
for e in errors:
    print(f"ERROR {compose_path}: {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}")
here = os.path.dirname(os.path.abspath(compose_path))
missing = []
for name, svc in compose["services"].items():
    for v in svc.get("volumes", []):
        src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith(".") and not os.path.exists(os.path.join(here, src)):
            missing.append(f"{name}: {src}")
for m in missing:
    print(f"ERROR {compose_path}: mounts a missing path: {m}")
if errors or missing:
    sys.exit(1)
print(f"INFO {compose_path}: valid against the Compose Specification schema "
      f"({len(compose['services'])} services; every mounted local path exists)")
