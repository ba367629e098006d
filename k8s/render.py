#!/usr/bin/env python3
"""Renders a kustomization the way `kubectl kustomize` does, for the subset k8s/ uses.

CI has no kubectl; this renderer implements exactly the fields our kustomizations use
(resources, namespace, images, patches: strategic merge, with or without a target) and
refuses any other field, so it cannot silently render something kustomize would not.

    python3 k8s/render.py k8s/overlays/prod > prod.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images", "patches"}
# Lists that strategic merge patches merge by `name` (the Kubernetes patchMergeKey of each).
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes", "volumeMounts"}
# Kinds with no namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "GatewayClass", "StorageClass"}


class RenderError(Exception):
    pass


def load_documents(path: Path) -> list[dict]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def merge(base, patch, key=None):
    """Strategic merge of `patch` into `base`: maps merge key by key (null deletes), lists
    named in MERGE_BY_NAME merge element by element on `name`, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_BY_NAME:
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            name = item.get("name")
            if name is None:
                raise RenderError(f"a {key} entry of a patch has no name")
            for i, existing in enumerate(out):
                if existing.get("name") == name:
                    out[i] = merge(existing, item, None)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def selected(resource: dict, target: dict | None, patch: dict) -> bool:
    kind, name = resource.get("kind"), resource.get("metadata", {}).get("name")
    if target is None:
        return kind == patch.get("kind") and name == patch.get("metadata", {}).get("name")
    unknown = set(target) - {"kind", "name", "labelSelector"}
    if unknown:
        raise RenderError(f"patch target fields not supported: {sorted(unknown)}")
    if "kind" in target and target["kind"] != kind:
        return False
    if "name" in target and target["name"] != name:
        return False
    labels = resource.get("metadata", {}).get("labels", {})
    for term in filter(None, target.get("labelSelector", "").split(",")):
        k, _, v = term.partition("=")
        if labels.get(k.strip()) != v.strip():
            return False
    return True


def set_image(resource: dict, images: list[dict]) -> None:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        current = container.get("image", "")
        bare = current.split("@")[0].rsplit(":", 1)[0] if ":" in current.split("/")[-1] else current
        for image in images:
            if image["name"] == bare:
                tag = image.get("newTag") or (current.split(":")[-1] if current != bare else "")
                container["image"] = image.get("newName", bare) + (f":{tag}" if tag else "")


def render(directory: Path) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise RenderError(f"{directory}: kustomization fields this renderer does not implement: {sorted(unknown)}")
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources.extend(render(path) if path.is_dir() else load_documents(path))
    for spec in kustomization.get("patches", []):
        if set(spec) - {"path", "target"}:
            raise RenderError(f"{directory}: patch fields not supported: {sorted(set(spec) - {'path', 'target'})}")
        for patch in load_documents(directory / spec["path"]):
            hits = [r for r in resources if selected(r, spec.get("target"), patch)]
            if not hits:
                raise RenderError(f"{directory}/{spec['path']}: patch matches nothing")
            for resource in hits:
                body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
                resources[resources.index(resource)] = merge(resource, body)
    if "images" in kustomization:
        for resource in resources:
            set_image(resource, kustomization["images"])
    if "namespace" in kustomization:
        for resource in resources:
            if resource.get("kind") not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    return resources


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        resources = render(Path(sys.argv[1]))
    except (RenderError, OSError, yaml.YAMLError) as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(resources, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
