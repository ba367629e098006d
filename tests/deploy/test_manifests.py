"""The Kubernetes manifests, rendered from each overlay by `kubectl kustomize`: every object
valid against the Kubernetes schemas (1.30, the oldest release with `preStop.sleep` on by
default, and the newest the validator knows), and the rules a deployment of chatmesh relies on."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ["dev", "prod"]
VERSIONS = ["1.30.0", "1.37.0"]
GRPC_PARTS = {"user", "channel", "chat", "dispatcher"}
GATEWAYS = {"rest", "ws"}
PUBLIC_GRPC_PORT, INTERNAL_GRPC_PORT = 50051, 50052
DRAIN_SECS = 10  # grpc.drain_secs, rest.drain_secs and ws.drain_secs default

GATEWAY_SCHEMA = json.loads((K8S / "schemas" / "gateway-api-v1.json").read_text())


def kustomize(directory: Path) -> str:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl not found: the manifests are rendered by `kubectl kustomize` (make tools installs it)")
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return done.stdout


@functools.cache
def kustomized(overlay: str) -> str:
    return kustomize(K8S / "overlays" / overlay)


def rendered(overlay: str) -> list[dict]:
    """The overlay's objects, parsed afresh on each call (a test may alter its copy)."""
    return [doc for doc in yaml.safe_load_all(kustomized(overlay)) if doc is not None]


def of_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def public_services() -> set[str]:
    """Every service in proto/ that is not internal, fully qualified."""
    found = set()
    for proto in (ROOT / "proto" / "chatmesh").rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
        found |= {f"{package}.{name}" for name in re.findall(r"^service\s+(\w+)", text, re.M)}
    return {s for s in found if not s.endswith("InternalService")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay):
    objects = rendered(overlay)
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("gateway.networking.k8s.io/"):
            jsonschema.validate(obj, {**GATEWAY_SCHEMA, "$ref": f"#/definitions/{obj['kind']}"})
            checked += 1
            continue
        for version in VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    print(f"{overlay}: {checked} objects valid (Kubernetes {', '.join(VERSIONS)}; Gateway API v1)")
    # why: a render that lost objects (a dropped resource, an empty overlay) would validate too
    kinds = {obj["kind"] for obj in objects}
    expected = {"Deployment", "Service", "ConfigMap", "NetworkPolicy", "Gateway", "HTTPRoute", "GRPCRoute"}
    assert expected <= kinds, f"{overlay}: missing {expected - kinds}"
    assert sum(obj["kind"] == "Deployment" for obj in objects) == 7, "one Deployment per part"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_patch_of_an_overlay_changes_what_it_renders(overlay, tmp_path):
    # why: kustomize skips a patch whose target matches nothing, silently: a typo in a target
    # (a label, a kind) would drop the patch with no error
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    for i, patch in enumerate(kustomization["patches"]):
        copy = tmp_path / str(i)
        shutil.copytree(K8S, copy)
        without = {**kustomization, "patches": kustomization["patches"][:i] + kustomization["patches"][i + 1 :]}
        (copy / "overlays" / overlay / "kustomization.yaml").write_text(yaml.safe_dump(without, sort_keys=False))
        assert kustomize(copy / "overlays" / overlay) != kustomized(overlay), f"{overlay}: {patch['path']} changes nothing"


def test_a_broken_manifest_is_caught():
    deployment = of_kind(rendered("prod"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)
    route = of_kind(rendered("prod"), "GRPCRoute")[0]
    route["spec"]["rules"][0]["backendRefs"][0]["prot"] = 50051
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(route, {**GATEWAY_SCHEMA, "$ref": "#/definitions/GRPCRoute"})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_probed_bounded_drained_and_locked_down(overlay):
    deployments = of_kind(rendered(overlay), "Deployment")
    assert {component(d) for d in deployments} == GRPC_PARTS | GATEWAYS | {"indexer"}
    for deployment in deployments:
        part, pod = component(deployment), deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, part
        assert pod["securityContext"]["runAsNonRoot"] is True, part
        assert pod["securityContext"]["runAsUser"] != 0, part
        for container in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{part}: {probe}"
                kind = "grpc" if part in GRPC_PARTS else "httpGet"
                assert kind in container[probe], f"{part}: {probe} should be {kind}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{part}: {bound}"
            sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert 5 <= sleep <= 10, part
            assert pod["terminationGracePeriodSeconds"] >= sleep + DRAIN_SECS + 5, part
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, part
            assert context["allowPrivilegeEscalation"] is False, part
            assert context["capabilities"]["drop"] == ["ALL"], part
            assert container["args"][:2] == ["serve", part], f"{part} runs `chatmesh serve {part}`"
    accounts = of_kind(rendered(overlay), "ServiceAccount")
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


def test_prod_autoscales_and_protects_the_gateways_and_busy_parts():
    objects = rendered("prod")
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in of_kind(objects, "HorizontalPodAutoscaler")}
    budgets = {o["metadata"]["name"]: o for o in of_kind(objects, "PodDisruptionBudget")}
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    for part in GATEWAYS | {"chat", "dispatcher"}:
        assert f"chatmesh-{part}" in scaled, f"{part} has an HPA"
        assert "replicas" not in deployments[f"chatmesh-{part}"]["spec"], f"{part}: replicas left to its HPA"
    for name, deployment in deployments.items():
        assert name in budgets, f"{name} has a PodDisruptionBudget"
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels
        assert "podAntiAffinity" in deployment["spec"]["template"]["spec"]["affinity"], name
    print(f"prod: {len(scaled)} autoscaled parts, {len(budgets)} disruption budgets")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_route_or_policy_exposes_an_internal_service(overlay):
    objects = rendered(overlay)
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services.values())

    # gRPC: only public services are routed, only to the public listener, and all of them are
    routed = set()
    for route in of_kind(objects, "GRPCRoute"):
        for rule in route["spec"]["rules"]:
            names = [m["method"]["service"] for m in rule["matches"]]
            assert all(m["method"]["type"] == "Exact" for m in rule["matches"])
            assert not any(n.endswith("InternalService") for n in names), names
            assert all(ref["port"] == PUBLIC_GRPC_PORT for ref in rule["backendRefs"]), names
            routed |= set(names)
    assert routed == public_services()

    # HTTP: only the two gateways
    for route in of_kind(objects, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                assert (ref["name"], ref["port"]) in {("chatmesh-rest", 8080), ("chatmesh-ws", 8081)}, ref

    # policies: a default deny, and nothing but chatmesh pods reaches the internal listener
    policies = of_kind(objects, "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies), "default deny"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            ports = {p["port"] for p in rule.get("ports", [])}
            assert ports, f"{policy['metadata']['name']}: a rule opens every port"
            mesh_only = peers and all(
                set(p) == {"podSelector"} and p["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/part-of") == "chatmesh"
                for p in peers
            )
            if not mesh_only:
                assert INTERNAL_GRPC_PORT not in ports, f"{policy['metadata']['name']} opens the internal listener"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_ports_services_and_probes_agree(overlay):
    objects = rendered(overlay)
    (config,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-config"]
    settings = tomllib.loads(config["data"]["chatmesh.toml"])
    example = tomllib.loads((ROOT / "config" / "chatmesh.example.toml").read_text())
    for section, values in settings.items():
        if isinstance(values, dict):
            assert section in example and set(values) <= set(example[section]), f"[{section}] {set(values)}"
        else:
            assert section in example, section
    assert settings["grpc"]["listen"].endswith(f":{PUBLIC_GRPC_PORT}")
    assert settings["grpc"]["internal_listen"].endswith(f":{INTERNAL_GRPC_PORT}")
    for peer, url in settings["peers"].items():
        assert url == f"http://chatmesh-{peer}:{INTERNAL_GRPC_PORT}", "parts call each other on the internal listener"
    # the engines ConfigMap names only settings that exist
    (engines,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-engines"]
    for variable in engines["data"]:
        known = example
        for part in variable.removeprefix("CHATMESH_").lower().split("__"):
            assert isinstance(known, dict) and part in known, variable
            known = known[part]
    # every Service port reaches a named container port of its pods
    deployments = {component(d): d for d in of_kind(objects, "Deployment")}
    for service in of_kind(objects, "Service"):
        pod = deployments[component(service)]["spec"]["template"]["spec"]
        names = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert names.get(port["targetPort"]) == port["port"], (service["metadata"]["name"], port)


def test_the_image_is_multi_stage_non_root_and_runs_the_binary():
    lines = [l.strip() for l in (ROOT / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]
    stages = [l for l in lines if l.startswith("FROM ")]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    rust = re.search(r"FROM rust:(\d+)\.(\d+)", stages[0])
    floor = re.search(r'rust-version = "(\d+)\.(\d+)"', (ROOT / "Cargo.toml").read_text())
    assert rust and tuple(map(int, rust.groups())) >= tuple(map(int, floor.groups())), "the builder meets rust-version"
    assert "distroless" in stages[-1] and stages[-1].endswith(":nonroot"), "a minimal runtime image"
    assert any("cargo build --release --locked" in l for l in lines), "a locked release build"
    assert "USER 65532:65532" in lines
    assert 'ENTRYPOINT ["/usr/local/bin/chatmesh"]' in lines
    assert not any(l.startswith("ADD ") and "://" in l for l in lines), "nothing fetched outside the registries"
    # what the image's config names exists, and the manifests' containers run as the image's user
    settings = tomllib.loads((ROOT / "config" / "container.toml").read_text())
    example = tomllib.loads((ROOT / "config" / "chatmesh.example.toml").read_text())
    for section, values in settings.items():
        assert section in example and (not isinstance(values, dict) or set(values) <= set(example[section]))
    for deployment in of_kind(rendered("prod"), "Deployment"):
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


def test_every_metric_in_the_code_is_documented():
    recorded = set()
    for source in ROOT.glob("*/**/src/**/*.rs"):
        recorded |= set(re.findall(r'metrics::(?:counter|gauge|histogram)!\(\s*"(chatmesh_\w+)"', source.read_text()))
    documented = set(re.findall(r"^\| `(chatmesh_\w+)`", (ROOT / "docs" / "telemetry.md").read_text(), re.M))
    assert recorded, "metrics found in the code"
    assert recorded == documented, f"undocumented: {recorded - documented}; gone: {documented - recorded}"
    print(f"{len(recorded)} metrics, each documented")
