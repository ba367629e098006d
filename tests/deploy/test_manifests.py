"""The Kubernetes manifests, rendered from each overlay by `kubectl kustomize` (and prod with
each Gateway implementation's edge component): every object valid against the Kubernetes schemas
(1.30, the oldest release with `preStop.sleep` on by default, and the newest the validator knows)
or, for custom resources, against the upstream CRD schemas vendored in k8s/schemas; and the rules
a deployment of chatmesh relies on."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shutil
import subprocess
import tempfile
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
GRPC_PARTS = {"user", "channel", "chat", "dispatcher", "feed"}
GATEWAYS = {"rest", "ws"}
PARTS = GRPC_PARTS | GATEWAYS | {"indexer"}
# the parts that keep a store and mint ids (cli/src/lib.rs, Part::has_store); all but chat, whose
# node id is its pod index, lease theirs from Redis in prod (the lowest free first)
STORED_PARTS = {"user", "channel", "chat", "feed"}
LEASED_PARTS = STORED_PARTS - {"chat"}
# who calls whom on the internal listener (cli/src: each part's `internal(peer, part)` and
# `peers.get`; the REST gateway routes every gRPC part's services by package)
CALLS = {
    "rest": GRPC_PARTS,
    "ws": {"chat", "dispatcher"},
    "user": {"dispatcher", "channel", "chat", "feed"},
    "channel": {"user", "chat"},
    "chat": {"channel", "user", "dispatcher"},
    "dispatcher": {"channel"},
    "indexer": {"chat"},
    "feed": {"user"},
}
# the parts whose internal listener admits their callers alone, not every chatmesh pod
NARROWED = {"feed"}
WORKLOADS = {"Deployment", "StatefulSet"}
PUBLIC_GRPC_PORT, INTERNAL_GRPC_PORT = 50051, 50052
EDGE_PORTS = {"grpc": PUBLIC_GRPC_PORT, "rest": 8080, "ws": 8081}
DRAIN_SECS = 10  # grpc.drain_secs, rest.drain_secs and ws.drain_secs default
# why: on SIGTERM the chat part relays, after its drain, what it wrote during it, then releases
# its node-id lease; the binary bounds that pass by this
FINAL_RELAY_SECS = 10
LEASE_RELEASE_SECS = 1  # crates/platform/src/node_lease.rs: the release waits at most 1 s
MAX_NODE_ID = 1023  # crates/platform/src/ids.rs
DATA_DIR = "/var/lib/chatmesh"
# the chat part with its index writer over 1,000,000 chats: 363-370 MiB resident (bench/results)
CHAT_WITH_INDEX_MIB = 370

# The Gateway implementations, as k8s/components/edge-<name> configures them (the name is the
# Gateway's chatmesh.io/gateway-implementation annotation), and how each leaves a gRPC server
# stream uncut: Envoy Gateway keeps Envoy's 15 s route timeout unless a BackendTrafficPolicy
# lifts it (GRPCRoute has no timeout field); Istio sets no route timeout unless asked; Cilium
# (1.16 and later) sets every route's to 0 (cilium/cilium#31514).
EDGES = ["envoy-gateway", "istio", "cilium"]
GRPC_STREAMS_NEED_POLICY = {"envoy-gateway": True, "istio": False, "cilium": False}
RENDERINGS = [("dev", "envoy-gateway")] + [("prod", edge) for edge in EDGES]

# copies of k8s/ with another edge component, removed when the session ends
SCRATCH = tempfile.TemporaryDirectory(prefix="chatmesh-deploy-")

SCHEMAS = {}
for _file in sorted((K8S / "schemas").glob("*.json")):
    for _kind, _schema in json.loads(_file.read_text())["definitions"].items():
        SCHEMAS[(_schema["properties"]["apiVersion"]["const"], _kind)] = _schema


def kustomize(directory: Path) -> str:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl not found: the manifests are rendered by `kubectl kustomize` (make tools installs it)")
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return done.stdout


@functools.cache
def kustomized(overlay: str, edge: str = "envoy-gateway") -> str:
    if edge == "envoy-gateway":
        return kustomize(K8S / "overlays" / overlay)
    # the overlay with another edge component in place of Envoy Gateway's
    copy = Path(SCRATCH.name) / f"{overlay}-{edge}" / "k8s"
    shutil.copytree(K8S, copy)
    kustomization = copy / "overlays" / overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert "../../components/edge-envoy-gateway" in text, f"{overlay} uses the Envoy Gateway edge"
    kustomization.write_text(text.replace("../../components/edge-envoy-gateway", f"../../components/edge-{edge}"))
    return kustomize(copy / "overlays" / overlay)


def rendered(overlay: str, edge: str = "envoy-gateway") -> list[dict]:
    """The overlay's objects, parsed afresh on each call (a test may alter its copy)."""
    return [doc for doc in yaml.safe_load_all(kustomized(overlay, edge)) if doc is not None]


def of_kind(objects: list[dict], *kinds: str) -> list[dict]:
    return [o for o in objects if o["kind"] in kinds]


def workloads(objects: list[dict]) -> list[dict]:
    return of_kind(objects, *WORKLOADS)


def component(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def by_part(objects: list[dict]) -> dict[str, dict]:
    return {component(w): w for w in workloads(objects)}


def container(workload: dict) -> dict:
    (found,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "chatmesh"]
    return found


def env(workload: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(workload).get("env", [])}


def settings(overlay: str) -> dict:
    return yaml.safe_load((K8S / "overlays" / overlay / "settings.yaml").read_text())["data"]


def implementation(objects: list[dict]) -> str:
    (gateway,) = of_kind(objects, "Gateway")
    return gateway["metadata"].get("annotations", {}).get("chatmesh.io/gateway-implementation", "(none)")


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi)", quantity)
    assert match, f"memory quantity {quantity}"
    return float(match.group(1)) * units[match.group(2)]


def public_services() -> set[str]:
    """Every service in proto/ that is not internal, fully qualified."""
    found = set()
    for proto in (ROOT / "proto" / "chatmesh").rglob("*.proto"):
        text = proto.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
        found |= {f"{package}.{name}" for name in re.findall(r"^service\s+(\w+)", text, re.M)}
    return {s for s in found if not s.endswith("InternalService")}


@pytest.mark.parametrize(("overlay", "edge"), RENDERINGS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay, edge):
    objects = rendered(overlay, edge)
    checked = 0
    for obj in objects:
        schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if schema:
            jsonschema.validate(obj, schema)
        else:
            # a kind Kubernetes does not define (a custom resource with no schema vendored) fails here
            for version in VERSIONS:
                kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    print(f"{overlay} ({edge}): {checked} objects valid (Kubernetes {', '.join(VERSIONS)}; k8s/schemas)")
    # why: a render that lost objects (a dropped resource, an empty overlay) would validate too
    kinds = {obj["kind"] for obj in objects}
    expected = {"Deployment", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy", "Gateway", "HTTPRoute", "GRPCRoute"}
    assert expected <= kinds, f"{overlay}: missing {expected - kinds}"
    assert {component(w) for w in workloads(objects)} == PARTS, "one workload per part"
    assert len(workloads(objects)) == len(PARTS)


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
        jsonschema.validate(route, SCHEMAS[(route["apiVersion"], "GRPCRoute")])
    (policy,) = of_kind(rendered("prod"), "BackendTrafficPolicy")
    policy["spec"]["timeout"]["http"]["requestTimeOut"] = "0s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(policy, SCHEMAS[(policy["apiVersion"], "BackendTrafficPolicy")])
    cilium = of_kind(rendered("prod", "cilium"), "CiliumNetworkPolicy")[0]
    cilium["spec"]["ingress"][0]["fromEntities"] = ["the-internet"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cilium, SCHEMAS[(cilium["apiVersion"], "CiliumNetworkPolicy")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_probed_bounded_drained_and_locked_down(overlay):
    for workload in workloads(rendered(overlay)):
        part, pod = component(workload), workload["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, part
        assert pod["securityContext"]["runAsNonRoot"] is True, part
        assert pod["securityContext"]["runAsUser"] != 0, part
        for c in pod["containers"]:
            kind = "grpc" if part in GRPC_PARTS else "httpGet"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{part}: {probe}"
                assert kind in c[probe], f"{part}: {probe} should be {kind}"
            # why: a first start may wait minutes (the schema migration, a node-id lease)
            startup = c["startupProbe"]
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, f"{part}: start-up budget"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{part}: {bound}"
            sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert 5 <= sleep <= 10, part
            assert pod["terminationGracePeriodSeconds"] >= sleep + DRAIN_SECS + 5, part
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, part
            assert context["allowPrivilegeEscalation"] is False, part
            assert context["capabilities"]["drop"] == ["ALL"], part
            assert c["args"][:2] == ["serve", part], f"{part} runs `chatmesh serve {part}`"
    accounts = of_kind(rendered(overlay), "ServiceAccount")
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


def test_prod_autoscales_and_protects_the_gateways_and_busy_parts():
    objects = rendered("prod")
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in of_kind(objects, "HorizontalPodAutoscaler")}
    budgets = {o["metadata"]["name"]: o for o in of_kind(objects, "PodDisruptionBudget")}
    named = {w["metadata"]["name"]: w for w in workloads(objects)}
    for part in GATEWAYS | {"chat", "dispatcher", "feed"}:
        name = f"chatmesh-{part}"
        assert name in scaled, f"{part} has an HPA"
        assert scaled[name]["spec"]["scaleTargetRef"]["kind"] == named[name]["kind"], f"{part}: the HPA's target kind"
        assert "replicas" not in named[name]["spec"], f"{part}: replicas left to its HPA"
    for name, workload in named.items():
        assert name in budgets, f"{name} has a PodDisruptionBudget"
        labels = workload["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels
        assert "podAntiAffinity" in workload["spec"]["template"]["spec"]["affinity"], name
    print(f"prod: {len(scaled)} autoscaled parts, {len(budgets)} disruption budgets")


def test_hpas_measure_the_chatmesh_container_and_ws_scales_on_its_sessions():
    # why: with Linkerd's native sidecar and no CPU request on the proxy, a pod-wide Resource
    # metric fails ("missing request for cpu") and the HPA never scales
    hpas = {o["metadata"]["name"]: o for o in of_kind(rendered("prod"), "HorizontalPodAutoscaler")}
    for name, hpa in hpas.items():
        for metric in hpa["spec"]["metrics"]:
            assert metric["type"] != "Resource", f"{name}: a pod-wide Resource metric"
            if metric["type"] == "ContainerResource":
                assert metric["containerResource"]["container"] == "chatmesh", name
    sessions = [m for m in hpas["chatmesh-ws"]["spec"]["metrics"] if m["type"] == "Pods"]
    assert [m["pods"]["metric"]["name"] for m in sessions] == ["chatmesh_ws_sessions"], "ws scales on its sessions"
    assert "`chatmesh_ws_sessions`" in (ROOT / "docs" / "telemetry.md").read_text(), "a metric the gateway exports"


@pytest.mark.parametrize(("overlay", "edge"), RENDERINGS)
def test_every_route_names_its_hostname_and_no_two_route_kinds_share_a_listener_hostname(overlay, edge):
    # why: a controller may accept one route kind per hostname on a listener; the GRPCRoute
    # sorts first, and REST and /ws would be refused
    objects = rendered(overlay, edge)
    listeners = {}
    for gateway in of_kind(objects, "Gateway"):
        for listener in gateway["spec"]["listeners"]:
            listeners[(gateway["metadata"]["name"], listener["name"])] = listener
    served: dict[tuple, set[str]] = {}
    for route in of_kind(objects, "HTTPRoute", "GRPCRoute"):
        name, hostnames = route["metadata"]["name"], route["spec"].get("hostnames", [])
        assert hostnames, f"{name} names its hostnames"
        for parent in route["spec"]["parentRefs"]:
            assert "sectionName" in parent, f"{name} attaches to one listener"
            listener = listeners[(parent["name"], parent["sectionName"])]
            kinds = [k["kind"] for k in listener.get("allowedRoutes", {}).get("kinds", [])]
            assert kinds == [route["kind"]], f"{name}'s listener admits {route['kind']} alone, not {kinds or 'any kind'}"
            for hostname in hostnames:
                assert hostname == listener["hostname"], f"{name}: {hostname} on {listener['name']}"
                served.setdefault((listener["port"], hostname), set()).add(route["kind"])
    for (port, hostname), kinds in served.items():
        assert len(kinds) == 1, f"{hostname}:{port} is served by {kinds}"
    ports_and_hosts = [(l["port"], l.get("hostname")) for l in listeners.values()]
    assert len(ports_and_hosts) == len(set(ports_and_hosts)), "listeners differ by port or hostname"


@pytest.mark.parametrize(("overlay", "edge"), RENDERINGS)
def test_streams_have_a_timeout_policy_for_the_gateway_implementation(overlay, edge):
    # why: Envoy-based gateways end a route's request after 15 s unless told otherwise, which cuts
    # DispatcherService.Subscribe, server-sent events and WebSockets
    objects = rendered(overlay, edge)
    used = implementation(objects)
    assert used == edge, f"the Gateway names its implementation ({used})"
    for route in of_kind(objects, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            assert (rule.get("timeouts") or {}).get("request") == "0s", f"{route['metadata']['name']}: streams uncut"
    policies = of_kind(objects, "BackendTrafficPolicy")
    for route in of_kind(objects, "GRPCRoute"):
        name = route["metadata"]["name"]
        lifted = [
            p
            for p in policies
            if ("GRPCRoute", name) in {(ref["kind"], ref["name"]) for ref in p["spec"]["targetRefs"]}
            and p["spec"]["timeout"]["http"]["requestTimeout"] == "0s"
        ]
        if GRPC_STREAMS_NEED_POLICY[used]:
            assert lifted, f"{name}: a BackendTrafficPolicy lifting Envoy's 15 s route timeout"
    if not GRPC_STREAMS_NEED_POLICY[used]:
        assert not policies, f"{used} has no use for Envoy Gateway's policies"


@pytest.mark.parametrize(("overlay", "edge"), RENDERINGS)
def test_the_edge_policy_admits_the_implementations_data_plane_to_the_public_ports_only(overlay, edge):
    objects = rendered(overlay, edge)
    used = implementation(objects)

    def from_data_plane(peer: dict) -> bool:
        if used == "envoy-gateway":
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
            pods = peer.get("podSelector", {}).get("matchLabels", {})
            return (
                namespace.get("kubernetes.io/metadata.name") == "envoy-gateway-system"
                and pods.get("app.kubernetes.io/managed-by") == "envoy-gateway"
                and pods.get("gateway.envoyproxy.io/owning-gateway-name") == "chatmesh"
            )
        if used == "istio":
            # Istio's gateway pods run in the Gateway's namespace
            return set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"] == {
                "gateway.networking.k8s.io/gateway-name": "chatmesh"
            }
        return False

    def selects(selector: dict, part: str) -> bool:
        if "matchLabels" in selector:
            return selector["matchLabels"].get("app.kubernetes.io/component") == part
        return any(e["key"] == "app.kubernetes.io/component" and part in e["values"] for e in selector["matchExpressions"])

    admitted = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if any(from_data_plane(peer) for peer in rule.get("from", [])):
                for part in PARTS:
                    if selects(policy["spec"]["podSelector"], part):
                        admitted |= {(part, p["port"]) for p in rule["ports"]}
    for policy in of_kind(objects, "CiliumNetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if used == "cilium" and "ingress" in rule.get("fromEntities", []):
                ports = {int(p["port"]) for to in rule["toPorts"] for p in to["ports"]}
                parts = {part for part in PARTS if selects(policy["spec"]["endpointSelector"], part)}
                admitted |= {(part, port) for part in parts for port in ports}
    wanted = {(part, PUBLIC_GRPC_PORT) for part in GRPC_PARTS} | {("rest", 8080), ("ws", 8081)}
    assert admitted == wanted, f"{used}: admitted {sorted(admitted)}"
    if used == "istio":
        # the default deny covers the Gateway's own pods too: they must take their clients
        gateway_pods = [
            p
            for p in of_kind(objects, "NetworkPolicy")
            if p["spec"]["podSelector"].get("matchLabels") == {"gateway.networking.k8s.io/gateway-name": "chatmesh"}
        ]
        opened = {p["port"] for g in gateway_pods for r in g["spec"]["ingress"] for p in r["ports"]}
        assert 443 in opened, "HTTPS reaches the Gateway's pods"


@pytest.mark.parametrize(("overlay", "edge"), RENDERINGS)
def test_no_route_or_policy_exposes_an_internal_service(overlay, edge):
    objects = rendered(overlay, edge)
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
    for policy in of_kind(objects, "CiliumNetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            ports = {int(p["port"]) for to in rule.get("toPorts", []) for p in to["ports"]}
            assert ports, f"{policy['metadata']['name']}: a rule opens every port"
            assert INTERNAL_GRPC_PORT not in ports, f"{policy['metadata']['name']} opens the internal listener"


def selected(selector: dict, labels: dict) -> bool:
    """Whether a label selector selects a pod with `labels` (an empty selector selects all)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", f"a selector this test cannot read: {expression}"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def callers_admitted(objects: list[dict], part: str, port: int) -> set[str]:
    """The parts whose pods the NetworkPolicies admit to `port` of `part`'s pods."""
    pods = {component(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(objects)}
    admitted = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        if not selected(policy["spec"]["podSelector"], pods[part]):
            continue
        for rule in policy["spec"].get("ingress", []):
            if port not in {p["port"] for p in rule["ports"]}:
                continue
            for peer in rule.get("from", [{"podSelector": {}}]):
                if set(peer) == {"podSelector"}:
                    admitted |= {other for other, labels in pods.items() if selected(peer["podSelector"], labels)}
    return admitted


@pytest.mark.parametrize(("overlay", "edge"), RENDERINGS)
def test_every_part_reaches_the_internal_listener_of_each_part_it_calls_and_the_feed_admits_its_callers_alone(
    overlay, edge
):
    # why: the default deny refuses whatever no policy admits, so a call the binary makes with
    # no policy for it fails only in a cluster; a narrowed part (the feed) takes its callers only
    objects = rendered(overlay, edge)
    for part in GRPC_PARTS:
        callers = {caller for caller, peers in CALLS.items() if part in peers}
        admitted = callers_admitted(objects, part, INTERNAL_GRPC_PORT)
        assert callers <= admitted, f"{part} refuses {callers - admitted}"
        if part in NARROWED:
            assert admitted == callers, f"{part} admits {admitted - callers}, which never call it"


def test_prod_requires_redis_and_the_engines_config_and_keeps_no_data_on_scratch_disks():
    # why: without Redis every user and channel replica mints ids with one node id, and ended
    # sessions and rate limits stay per pod; without the engines config a part falls back to
    # embedded stores, which on a pod's scratch disk lose what they acknowledged
    objects = rendered("prod")
    (engines,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-engines"]
    assert engines["data"]["CHATMESH_STORE__BACKEND"] != "embedded"
    for workload in workloads(objects):
        part, pod = component(workload), workload["spec"]["template"]["spec"]
        redis = env(workload).get("CHATMESH_REDIS_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        assert redis and redis["key"] == "redis-url", f"{part} is given Redis"
        assert not redis.get("optional", False), f"{part} cannot start without Redis"
        sources = [s["configMapRef"] for s in container(workload).get("envFrom", []) if "configMapRef" in s]
        engines_required = any(s["name"] == "chatmesh-engines" and not s.get("optional", False) for s in sources)
        assert engines_required, f"{part} needs the engines config"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container(workload)["volumeMounts"]:
            volume = volumes[mount["name"]]
            if mount["mountPath"] == DATA_DIR:
                pytest.fail(f"{part}: a volume at the data dir in prod ({mount['name']})")
            if "emptyDir" in volume:
                scratch = mount["mountPath"] == "/tmp" and volume["emptyDir"].get("sizeLimit")
                assert scratch, f"{part}: an emptyDir at {mount['mountPath']}"
        if part in LEASED_PARTS:
            assert env(workload)["CHATMESH_NODE_ID"]["value"] == "0", f"{part}: node ids leased from Redis"
        if part in STORED_PARTS:
            scylla = env(workload).get("CHATMESH_STORE__SCYLLA__PASSWORD", {})
            password = scylla.get("valueFrom", {}).get("secretKeyRef")
            assert password and password["key"] == "scylla-password", f"{part} is given the ScyllaDB password"
            assert not password.get("optional", False), f"{part} cannot start without the ScyllaDB password"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_chat_runs_as_a_statefulset_with_its_node_ids_from_the_pod_index(overlay):
    # why: a chat process relays the change feed it wrote, by node id; a stable id per pod lets
    # a replaced pod finish its predecessor's feed, and a StatefulSet never runs two pods of one
    # index (a Deployment's surge pod could take a draining pod's id)
    objects = rendered(overlay)
    (chat,) = [w for w in workloads(objects) if component(w) == "chat"]
    assert chat["kind"] == "StatefulSet"
    node_id = env(chat)["CHATMESH_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert node_id == "metadata.labels['apps.kubernetes.io/pod-index']"
    first = chat["spec"]["ordinals"]["start"]
    scaled = [h for h in of_kind(objects, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "chatmesh-chat"]
    most = max([chat["spec"].get("replicas") or 0] + [h["spec"]["maxReplicas"] for h in scaled])
    assert 0 < first and first + most - 1 <= MAX_NODE_ID, "node ids in range, and never 0 (which asks for a lease)"
    # other parts lease the lowest free ids: chat's range starts far above the replicas they run
    most_replicas = {component(w): w["spec"].get("replicas", 1) for w in workloads(objects)}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        most_replicas[component(hpa)] = max(most_replicas[component(hpa)], hpa["spec"]["maxReplicas"])
    leased = sum(most_replicas[part] for part in LEASED_PARTS)
    assert leased < first
    pod = chat["spec"]["template"]["spec"]
    sleep = container(chat)["lifecycle"]["preStop"]["sleep"]["seconds"]
    budget = sleep + DRAIN_SECS + FINAL_RELAY_SECS + LEASE_RELEASE_SECS + 5
    assert pod["terminationGracePeriodSeconds"] >= budget, "drain, final relay, lease release and a margin"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_user_part_holds_the_user_token_private_keys(overlay):
    # why: the gateways face the internet and every other part only verifies user tokens
    for workload in workloads(rendered(overlay)):
        part, pod = component(workload), workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (mount,) = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == f"{DATA_DIR}/keys/user"]
        volume = volumes[mount["name"]]
        if part == "user":
            assert volume["secret"]["secretName"] == "chatmesh-user-keys"
        else:
            assert volume.get("configMap", {}).get("name") == "chatmesh-user-public-keys", f"{part} mounts public keys only"
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert part == "user" or "chatmesh-user-keys" not in secrets, f"{part} holds the user-token private keys"


def test_the_migrate_job_is_named_after_the_release_it_migrates_to():
    # why: a Job's template is immutable, so one name for every release cannot be applied again
    objects = rendered("prod")
    (job,) = of_kind(objects, "Job")
    image = container(job)["image"]
    tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
    assert tag, f"the image {image} names its release"
    assert job["metadata"]["name"] == f"chatmesh-migrate-{tag}"
    assert settings("prod")["version"] == tag, "settings.yaml's version is the image's tag"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63
    assert {container(w)["image"] for w in workloads(objects)} == {image}, "the Job migrates for the image the parts run"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_settings_reach_the_gateway_and_its_routes(overlay):
    text = kustomized(overlay)
    assert "set-in-overlay" not in text, "every placeholder of the base is replaced"
    assert "chatmesh-settings" not in text, "the settings are not applied to the cluster"
    objects = rendered(overlay)
    wanted = settings(overlay)
    (gateway,) = of_kind(objects, "Gateway")
    assert gateway["spec"]["gatewayClassName"] == wanted["gateway-class"]
    hosts = {l["name"]: l["hostname"] for l in gateway["spec"]["listeners"]}
    assert hosts == {"https": wanted["host"], "grpc": wanted["grpc-host"]}
    for route in of_kind(objects, "HTTPRoute"):
        assert route["spec"]["hostnames"] == [wanted["host"]]
    for route in of_kind(objects, "GRPCRoute"):
        assert route["spec"]["hostnames"] == [wanted["grpc-host"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_are_told_apart_in_telemetry_and_scraped(overlay):
    for workload in workloads(rendered(overlay)):
        part, variables = component(workload), container(workload).get("env", [])
        attributes = env(workload)["OTEL_RESOURCE_ATTRIBUTES"]["value"]
        assert "service.instance.id=" in attributes and "k8s.pod.name=" in attributes, part
        # $(NAME) expands only to a variable defined earlier in the list
        for i, variable in enumerate(variables):
            for name in re.findall(r"\$\((\w+)\)", variable.get("value", "")):
                assert name in {v["name"] for v in variables[:i]}, f"{part}: {variable['name']} uses $({name}) before it is set"
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        ports = {p["name"]: p["containerPort"] for p in container(workload)["ports"]}
        assert annotations["prometheus.io/scrape"] == "true", part
        assert int(annotations["prometheus.io/port"]) == ports["metrics"], part
        assert annotations["prometheus.io/path"] == "/metrics", part


def test_the_dev_chat_pod_is_sized_for_its_measured_memory():
    (chat,) = [w for w in workloads(rendered("dev")) if component(w) == "chat"]
    assert "indexer" in container(chat)["args"], "dev's chat pod keeps the search index"
    resources = container(chat)["resources"]
    assert mebibytes(resources["requests"]["memory"]) >= CHAT_WITH_INDEX_MIB
    assert mebibytes(resources["limits"]["memory"]) >= 1.5 * CHAT_WITH_INDEX_MIB


def test_every_dev_store_has_a_volume_of_its_own_and_one_writer():
    # why: an embedded store takes one process: each part keeping one needs its own persistent
    # volume at the data dir, and a rollout must stop the old pod before starting the new one
    objects = rendered("dev")
    claims = {c["metadata"]["name"] for c in of_kind(objects, "PersistentVolumeClaim")}
    owners: dict[str, str] = {}
    for workload in workloads(objects):
        part, pod = component(workload), workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        data = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == DATA_DIR]
        if part not in STORED_PARTS:
            assert not data, f"{part} keeps no store"
            continue
        (mount,) = data
        claim = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
        assert claim in claims, f"{part}: its data dir on a PersistentVolumeClaim of the overlay"
        assert claim not in owners, f"{part} and {owners.get(claim)} share {claim}"
        owners[claim] = part
        assert (workload["spec"].get("replicas") or 0) <= 1, f"{part}: one replica on its store"
        if workload["kind"] == "Deployment":
            strategy = workload["spec"].get("strategy", {}).get("type")
            assert strategy == "Recreate", f"{part}: no new pod beside the old one"
    assert set(owners.values()) == STORED_PARTS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_media_route_exists_only_where_local_media_is_served(overlay):
    # why: local media files are served beside a REST gateway that runs the chat part in its
    # own process; anywhere else /media reaches a gateway with nothing there
    objects = rendered(overlay)
    (engines,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-engines"]
    rest = by_part(objects)["rest"]
    served = engines["data"].get("CHATMESH_MEDIA__BACKEND", "local") == "local" and "chat" in container(rest)["args"]
    routed = any(
        m.get("path", {}).get("value", "").startswith("/media")
        for route in of_kind(objects, "HTTPRoute")
        for rule in route["spec"]["rules"]
        for m in rule["matches"]
    )
    assert routed == served, f"{overlay}: /media routed={routed}, served={served}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_ports_services_and_probes_agree(overlay):
    objects = rendered(overlay)
    (config,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-config"]
    config_settings = tomllib.loads(config["data"]["chatmesh.toml"])
    example = tomllib.loads((ROOT / "config" / "chatmesh.example.toml").read_text())
    for section, values in config_settings.items():
        if isinstance(values, dict):
            assert section in example and set(values) <= set(example[section]), f"[{section}] {set(values)}"
        else:
            assert section in example, section
    assert config_settings["grpc"]["listen"].endswith(f":{PUBLIC_GRPC_PORT}")
    assert config_settings["grpc"]["internal_listen"].endswith(f":{INTERNAL_GRPC_PORT}")
    for peer, url in config_settings["peers"].items():
        assert url == f"http://chatmesh-{peer}:{INTERNAL_GRPC_PORT}", "parts call each other on the internal listener"
    # the engines ConfigMap names only settings that exist
    (engines,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-engines"]
    for variable in engines["data"]:
        known = example
        for part in variable.removeprefix("CHATMESH_").lower().split("__"):
            assert isinstance(known, dict) and part in known, variable
            known = known[part]
    # every Service port reaches a named container port of its pods
    parts = by_part(objects)
    for service in of_kind(objects, "Service"):
        pod = parts[component(service)]["spec"]["template"]["spec"]
        names = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert names.get(port["targetPort"]) == port["port"], (service["metadata"]["name"], port)


# Where a proxy in front of the parts can be: the private ranges (RFC 1918, RFC 6598's shared
# space some clusters give pods, fc00::/7) and loopback (a sidecar proxy such as Linkerd's).
PROXY_RANGES = [
    ipaddress.ip_network(r)
    for r in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "127.0.0.0/8", "::1/128")
]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_limits_count_the_client_behind_the_trusted_proxies_of_the_overlay(overlay):
    # why: every client arrives through the Gateway and the Linkerd proxy; the login and sign-up
    # limits count the address they forward, believed only from the trusted ranges. A public
    # range trusted would let anyone there choose the address it is counted as; the connection
    # caps count TCP peers, so behind the proxies they are off.
    objects = rendered(overlay)
    (config,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-config"]
    (engines,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"] == "chatmesh-engines"]
    config_settings = tomllib.loads(config["data"]["chatmesh.toml"])
    wanted = json.loads(settings(overlay)["trusted-proxies"])
    assert json.loads(engines["data"]["CHATMESH_LIMITS__TRUSTED_PROXIES"]) == wanted, "the overlay's setting is used"
    for ranges in (wanted, config_settings["limits"]["trusted_proxies"]):
        assert ranges, "some proxy is trusted"
        for text in ranges:
            trusted = ipaddress.ip_network(text)
            assert any(trusted.version == r.version and trusted.subnet_of(r) for r in PROXY_RANGES), text
    for section in ("grpc", "rest", "ws"):
        cap = engines["data"].get(f"CHATMESH_{section.upper()}__MAX_CONNECTIONS_PER_SOURCE")
        assert int(cap or config_settings[section]["max_connections_per_source"]) == 0, f"[{section}] caps a proxy"
    for workload in workloads(objects):
        sources = [s["configMapRef"]["name"] for s in container(workload).get("envFrom", []) if "configMapRef" in s]
        assert "chatmesh-engines" in sources, f"{component(workload)} reads the setting"


def test_the_image_is_pinned_multi_stage_non_root_cached_and_runs_the_binary():
    lines = [l.strip() for l in (ROOT / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]
    stages = [l for l in lines if l.startswith("FROM ")]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    # why: a tag moves; a digest names the bytes that were reviewed (stages built FROM an
    # earlier stage name no image)
    named = {l.split()[-1] for l in stages if " AS " in l}
    for stage in stages:
        image = stage.split()[1]
        assert image in named or re.search(r"@sha256:[0-9a-f]{64}$", image), f"{image} is pinned by digest"
    rust = re.search(r"FROM rust:(\d+)\.(\d+)", stages[0])
    floor = re.search(r'rust-version = "(\d+)\.(\d+)"', (ROOT / "Cargo.toml").read_text())
    assert rust and tuple(map(int, rust.groups())) >= tuple(map(int, floor.groups())), "the builder meets rust-version"
    runtime = stages[-1].split()[1].split("@")[0]
    assert "distroless" in runtime and runtime.endswith(":nonroot"), "a minimal runtime image"
    # dependencies are built in a layer of their own, from a recipe of the manifests alone
    assert any(l.startswith("RUN cargo chef prepare") for l in lines)
    cook = next(i for i, l in enumerate(lines) if l.startswith("RUN cargo chef cook"))
    copy_sources = max(i for i, l in enumerate(lines) if l == "COPY . .")
    assert "--release" in lines[cook] and "--locked" in lines[cook], lines[cook]
    assert cook < copy_sources, "the dependencies are cooked before the sources are copied"
    assert any("cargo build --release --locked" in l for l in lines), "a locked release build"
    release = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]["release"]
    assert release.get("debug") in (False, 0, "none") and release.get("strip") in ("debuginfo", "symbols", True), "no debug info"
    assert "USER 65532:65532" in lines
    assert 'ENTRYPOINT ["/usr/local/bin/chatmesh"]' in lines
    assert not any(l.startswith("ADD ") and "://" in l for l in lines), "nothing fetched outside the registries"
    # what the image's config names exists, and the manifests' containers run as the image's user
    container_settings = tomllib.loads((ROOT / "config" / "container.toml").read_text())
    example = tomllib.loads((ROOT / "config" / "chatmesh.example.toml").read_text())
    for section, values in container_settings.items():
        assert section in example and (not isinstance(values, dict) or set(values) <= set(example[section]))
    for workload in workloads(rendered("prod")) + of_kind(rendered("prod"), "Job"):
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".git" in ignored and "**/target" in ignored, "the context leaves out history and build output"


def test_the_deploy_guide_walks_an_operator_through_a_real_cluster():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    headings = [h.lower() for h in re.findall(r"^#+ (.+)$", guide, re.M)]
    for topic in ("prerequisites", "settings", "install", "upgrad", "key rotation", "roll(ing )?back"):
        assert any(re.search(topic, h) for h in headings), f"docs/deploy.md covers {topic}"
    for prerequisite in ("Gateway API", "Linkerd", "ScyllaDB", "Redis", "Elasticsearch", "S3"):
        assert prerequisite in guide, prerequisite
    for edge in EDGES:
        assert f"components/edge-{edge}" in guide, f"docs/deploy.md says when to use edge-{edge}"
    # why: a query string lands in the gateway's access logs; production clients send the token
    # in the Sec-WebSocket-Protocol or Authorization header
    assert not re.search(r"wss://\S*[?&]token=", guide), "no access token in a production WebSocket URL"


def test_every_metric_in_the_code_is_documented():
    recorded = set()
    for source in ROOT.glob("*/**/src/**/*.rs"):
        recorded |= set(re.findall(r'metrics::(?:counter|gauge|histogram)!\(\s*"(chatmesh_\w+)"', source.read_text()))
    documented = set(re.findall(r"^\| `(chatmesh_\w+)`", (ROOT / "docs" / "telemetry.md").read_text(), re.M))
    assert recorded, "metrics found in the code"
    assert recorded == documented, f"undocumented: {recorded - documented}; gone: {documented - recorded}"
    print(f"{len(recorded)} metrics, each documented")
