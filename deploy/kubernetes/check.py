#!/usr/bin/env python3
"""Renders every kustomization under deploy/kubernetes and checks it offline.

For the base and each overlay: `kubectl kustomize` renders it, the
Kubernetes schemas validate every built-in resource (`kubernetes-validate
--strict`), and the rules below hold:

- every container of a Deployment, StatefulSet or Job has CPU and memory
  limits, runs as non-root with a read-only root filesystem, no privilege
  escalation, every capability dropped, seccomp RuntimeDefault; every
  container of a Deployment or StatefulSet has liveness and readiness probes;
- the workflow StatefulSet takes its instance id from the pod name;
- each Deployment has a PodDisruptionBudget selecting its pods;
- no Secret is defined and no secret-looking variable has a literal value;
- every Service selects some workload's pods;
- mesh resources (Linkerd, Istio) refer only to things that exist: servers,
  routes, authentications, service accounts, pod labels and port names.

`--self-test` breaks the rendered base in each of those ways, one at a
time, and fails unless every rule notices.

Usage: check.py [--kubectl PATH] [--validate PATH] [--self-test]
"""

import argparse
import copy
import pathlib
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent
TARGETS = ["base", "overlays/postgres-ha", "overlays/linkerd", "overlays/istio"]
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
SECRETISH = ("SECRET", "TOKEN", "PASSWORD", "DATABASE_URL")
TRUST_DOMAIN = "cluster.local"


def render(kubectl, target):
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / target)],
        check=True, capture_output=True, text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def validate(validator, docs, target):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f)
    run = subprocess.run(
        [validator, "--strict", "--quiet", "--no-warn", f.name],
        capture_output=True, text=True,
    )
    pathlib.Path(f.name).unlink()
    if run.returncode != 0:
        return [f"{target}: schema: {line}" for line in (run.stdout + run.stderr).splitlines()]
    return []


def name(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_spec(doc):
    return doc["spec"]["template"]["spec"]


def pod_labels(doc):
    return doc["spec"]["template"]["metadata"].get("labels", {})


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_containers(docs):
    problems = []
    for doc in (d for d in docs if d["kind"] in WORKLOADS):
        spec = pod_spec(doc)
        pod_ctx = spec.get("securityContext", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            where = f"{name(doc)} container {c['name']}"
            ctx = c.get("securityContext", {})
            limits = c.get("resources", {}).get("limits", {})
            if not ("cpu" in limits and "memory" in limits):
                problems.append(f"{where}: no CPU and memory limits")
            if not (ctx.get("runAsNonRoot") or pod_ctx.get("runAsNonRoot")):
                problems.append(f"{where}: not runAsNonRoot")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem not read-only")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation not disabled")
            if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities not all dropped")
            seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}
            if seccomp.get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccomp profile is not RuntimeDefault")
            if doc["kind"] != "Job":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
            for env in c.get("env", []):
                if any(s in env["name"] for s in SECRETISH) and not env["name"].endswith("_FILE"):
                    value = env.get("value", "")
                    if value and "$(" not in value:
                        problems.append(f"{where}: {env['name']} has a literal value")
    return problems


def check_workflow_instance_id(docs):
    for doc in docs:
        if doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "airt-workflow":
            for c in pod_spec(doc)["containers"]:
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {}).get("fieldRef", {})
                    if env["name"] == "AIRT_INSTANCE_ID" and ref.get("fieldPath") == "metadata.name":
                        return []
            return ["StatefulSet/airt-workflow: AIRT_INSTANCE_ID is not the pod name"]
    return ["no StatefulSet/airt-workflow"]


def check_disruption_budgets(docs):
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    problems = []
    for doc in (d for d in docs if d["kind"] == "Deployment"):
        labels = pod_labels(doc)
        if not any(selects(b["spec"]["selector"].get("matchLabels"), labels) for b in budgets):
            problems.append(f"{name(doc)}: no PodDisruptionBudget selects its pods")
    return problems


def check_secrets_and_services(docs):
    problems = [f"{name(d)}: Secrets are referenced, never defined here" for d in docs if d["kind"] == "Secret"]
    pods = [pod_labels(d) for d in docs if d["kind"] in WORKLOADS]
    for svc in (d for d in docs if d["kind"] == "Service"):
        if not any(selects(svc["spec"].get("selector"), labels) for labels in pods):
            problems.append(f"{name(svc)}: selects no workload's pods")
    return problems


def port_names(docs, selector):
    names = set()
    for doc in docs:
        if doc["kind"] in WORKLOADS and selects(selector, pod_labels(doc)):
            for c in pod_spec(doc)["containers"]:
                names.update(p.get("name") for p in c.get("ports", []))
    return names


def check_linkerd(docs):
    problems = []
    by_kind = {}
    for d in docs:
        if d["apiVersion"].startswith("policy.linkerd.io/"):
            by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    if not by_kind:
        return []
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    namespace = next((d for d in docs if d["kind"] == "Namespace"), {})
    if namespace.get("metadata", {}).get("annotations", {}).get("linkerd.io/inject") != "enabled":
        problems.append("linkerd: the namespace is not annotated linkerd.io/inject: enabled")
    for server in by_kind.get("Server", {}).values():
        selector = server["spec"]["podSelector"]["matchLabels"]
        if server["spec"]["port"] not in port_names(docs, selector):
            problems.append(f"linkerd {name(server)}: no selected pod has port {server['spec']['port']!r}")
    for route in by_kind.get("HTTPRoute", {}).values():
        for parent in route["spec"]["parentRefs"]:
            if parent["name"] not in by_kind.get(parent["kind"], {}):
                problems.append(f"linkerd {name(route)}: parent {parent['kind']}/{parent['name']} missing")
    for policy in by_kind.get("AuthorizationPolicy", {}).values():
        target = policy["spec"]["targetRef"]
        if target["name"] not in by_kind.get(target["kind"], {}):
            problems.append(f"linkerd {name(policy)}: target {target['kind']}/{target['name']} missing")
        for ref in policy["spec"]["requiredAuthenticationRefs"]:
            if ref["name"] not in by_kind.get(ref["kind"], {}):
                problems.append(f"linkerd {name(policy)}: authentication {ref['kind']}/{ref['name']} missing")
    for auth in by_kind.get("MeshTLSAuthentication", {}).values():
        for ref in auth["spec"].get("identityRefs", []):
            if ref["kind"] == "ServiceAccount" and ref["name"] not in accounts:
                problems.append(f"linkerd {name(auth)}: no ServiceAccount {ref['name']}")
    return problems


def check_istio(docs):
    istio = [d for d in docs if d["apiVersion"].startswith("security.istio.io/")]
    if not istio:
        return []
    problems = []
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    namespace = next((d for d in docs if d["kind"] == "Namespace"), {})
    if namespace.get("metadata", {}).get("labels", {}).get("istio-injection") != "enabled":
        problems.append("istio: the namespace is not labelled istio-injection: enabled")
    pods = [pod_labels(d) for d in docs if d["kind"] in WORKLOADS]
    prefix = f"{TRUST_DOMAIN}/ns/{namespace['metadata']['name']}/sa/"
    for doc in istio:
        selector = doc["spec"].get("selector", {}).get("matchLabels")
        if selector is not None and not any(selects(selector, labels) for labels in pods):
            problems.append(f"istio {name(doc)}: selects no workload")
        for rule in doc["spec"].get("rules", []):
            for source in rule.get("from", []):
                for principal in source["source"].get("principals", []):
                    if principal != "*" and not (
                        principal.startswith(prefix) and principal[len(prefix):] in accounts
                    ):
                        problems.append(f"istio {name(doc)}: principal {principal} is no ServiceAccount here")
    return problems


def check_postgres_ha(docs):
    """The external-database overlay: no in-cluster PostgreSQL, URLs from a
    Secret, three workflow replicas."""
    problems = [f"{name(d)}: still deployed" for d in docs if d["metadata"]["name"] == "airt-postgres"]
    for doc in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet")):
        for c in pod_spec(doc)["containers"]:
            url = next((e for e in c.get("env", []) if e["name"] == "AIRT_DATABASE_URL"), {})
            if "secretKeyRef" not in url.get("valueFrom", {}):
                problems.append(f"{name(doc)}: AIRT_DATABASE_URL does not come from a Secret")
        if doc["metadata"]["name"] == "airt-workflow" and doc["spec"].get("replicas") != 3:
            problems.append(f"{name(doc)}: {doc['spec'].get('replicas')} replicas, not 3")
    return problems


OVERLAY_RULES = {"overlays/postgres-ha": [check_postgres_ha]}

RULES = [
    check_containers,
    check_workflow_instance_id,
    check_disruption_budgets,
    check_secrets_and_services,
    check_linkerd,
    check_istio,
]


def problems_of(docs):
    return [p for rule in RULES for p in rule(docs)]


def self_test(docs):
    """Each breakage must be reported; returns what went unnoticed."""

    def find(kind, doc_name):
        return next(d for d in docs_copy if d["kind"] == kind and d["metadata"]["name"] == doc_name)

    def fix_instance_id(env):
        env.pop("valueFrom")
        env["value"] = "workflow"

    breakages = {
        "a readiness probe removed": lambda: pod_spec(find("Deployment", "airt-policy"))["containers"][0].pop("readinessProbe"),
        "a memory limit removed": lambda: pod_spec(find("StatefulSet", "airt-workflow"))["containers"][0]["resources"]["limits"].pop("memory"),
        "a writable root filesystem": lambda: pod_spec(find("Job", "airt-bootstrap"))["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        "root allowed": lambda: [pod_spec(find("Deployment", "airt-registry"))["securityContext"].pop("runAsNonRoot"),
                                 pod_spec(find("Deployment", "airt-registry"))["containers"][0]["securityContext"].pop("runAsNonRoot")],
        "a fixed instance id": lambda: fix_instance_id(next(
            e for e in pod_spec(find("StatefulSet", "airt-workflow"))["containers"][0]["env"]
            if e["name"] == "AIRT_INSTANCE_ID")),
        "a PodDisruptionBudget removed": lambda: docs_copy.remove(find("PodDisruptionBudget", "airt-registry")),
        "a Secret inlined": lambda: docs_copy.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "airt-auth"}}),
        "a literal service token": lambda: pod_spec(find("StatefulSet", "airt-workflow"))["containers"][0]["env"].append(
            {"name": "AIRT_SERVICE_TOKEN", "value": "eyJhbGciOi"}),
    }
    unnoticed = []
    for what, breakage in breakages.items():
        docs_copy = copy.deepcopy(docs)
        breakage()
        if not problems_of(docs_copy):
            unnoticed.append(what)
    return unnoticed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--validate", default="kubernetes-validate")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    failed = False
    for target in TARGETS:
        docs = render(args.kubectl, target)
        problems = validate(args.validate, docs, target) + [f"{target}: {p}" for p in problems_of(docs)]
        problems += [f"{target}: {p}" for rule in OVERLAY_RULES.get(target, []) for p in rule(docs)]
        kinds = sorted({d["kind"] for d in docs})
        status = "ok" if not problems else "FAILED"
        print(f"{target}: {len(docs)} resources ({', '.join(kinds)}): {status}")
        for problem in problems:
            print(f"  - {problem}")
        failed |= bool(problems)
        if args.self_test and target == "base":
            unnoticed = self_test(docs)
            for what in unnoticed:
                print(f"  - self-test: {what} went unnoticed")
            failed |= bool(unnoticed)
            if not unnoticed:
                print("  self-test: every breakage was reported")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
