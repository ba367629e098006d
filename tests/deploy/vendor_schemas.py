"""Writes a strict JSON schema for custom resources under k8s/schemas/ from their upstream CRDs,
so the rendered manifests are checked offline against what the cluster's API server will accept.

    python tests/deploy/vendor_schemas.py OUT.json "TITLE" SOURCE... [--kinds Kind,Kind]

A SOURCE is a CustomResourceDefinition YAML (every served version is taken) or KIND=FILE.json, a
CRD's openAPIV3Schema already in JSON (as the datreeio/CRDs-catalog publishes them). Strict:
descriptions are dropped, and every object with declared properties refuses others, as a
structural schema prunes them and `kubectl apply` (strict field validation) refuses them; object
metadata is limited to what manifests set (name, namespace, labels, annotations). CEL rules
(x-kubernetes-validations) are not evaluated, nor patterns in Go's regexp syntax only (such as
`\\PC`), which Python cannot compile: those are dropped and listed."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": NAME,
        "namespace": NAME,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


DROPPED: list[str] = []


def strict(schema):
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if k != "description"}
    if isinstance(out.get("pattern"), str):
        try:
            re.compile(out["pattern"])
        except re.error:
            DROPPED.append(out.pop("pattern"))
    closed = (
        out.get("type") == "object"
        and out.get("properties")
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    )
    if closed:
        out["additionalProperties"] = False
    return out


def resource(api_version: str, kind: str, schema: dict) -> dict:
    schema = strict(schema)
    schema["properties"] = {
        **schema["properties"],
        "apiVersion": {"const": api_version},
        "kind": {"const": kind},
        "metadata": METADATA,
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    schema["additionalProperties"] = False
    schema.get("properties", {}).pop("status", None)
    return schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("title")
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--kinds", help="only these kinds (comma-separated)")
    parser.add_argument("--api-version", help="for KIND=FILE.json sources: group/version")
    args = parser.parse_args()
    wanted = set(args.kinds.split(",")) if args.kinds else None
    definitions = {}
    for source in args.sources:
        if "=" in source:
            kind, path = source.split("=", 1)
            definitions[kind] = resource(args.api_version, kind, json.loads(Path(path).read_text()))
            continue
        for doc in yaml.safe_load_all(Path(source).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            kind, group = doc["spec"]["names"]["kind"], doc["spec"]["group"]
            if wanted and kind not in wanted:
                continue
            for version in doc["spec"]["versions"]:
                if version.get("served") and version.get("storage"):
                    api_version = f"{group}/{version['name']}"
                    definitions[kind] = resource(api_version, kind, version["schema"]["openAPIV3Schema"])
    if not definitions:
        sys.exit("no CustomResourceDefinition found")
    document = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": args.title,
        "description": "Made by tests/deploy/vendor_schemas.py from the upstream CRDs: strict, descriptions dropped"
        + (f"; patterns Python cannot compile dropped: {sorted(set(DROPPED))}" if DROPPED else "."),
        "definitions": dict(sorted(definitions.items())),
    }
    args.out.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"{args.out}: {', '.join(definitions)}")


if __name__ == "__main__":
    main()
