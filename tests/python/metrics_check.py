"""Reads the admin listeners of the three services after the Grand Unified
scenario and the approval walkthrough, parses /metrics with the Prometheus
client's own parser, and checks that the counters match what happened.

usage: metrics_check.py REGISTRY_ADMIN POLICY_ADMIN WORKFLOW_ADMIN  (host:port each)
"""

import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fetch(admin, path):
    try:
        with urllib.request.urlopen(f"http://{admin}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(admin):
    status, text = fetch(admin, "/metrics")
    assert status == 200, f"{admin}/metrics answered {status}"
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(found, name, **labels):
    return sum(v for l, v in found.get(name, []) if all(l.get(k) == w for k, w in labels.items()))


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        print(detail)
        sys.exit(1)


registry, policy, workflow = (samples(a) for a in sys.argv[1:4])
for name, found in (("registry", registry), ("policy", policy), ("workflow", workflow)):
    check(f"{name}: its audit chain has events", total(found, "airt_audit_chain_events") > 0)
    check(f"{name}: gRPC calls are counted", total(found, "airt_grpc_server_handled_total", grpc_code="OK") > 0)
    check(f"{name}: /livez answers 200", fetch(sys.argv[1 + ("registry", "policy", "workflow").index(name)], "/livez")[0] == 200)

check("registry: the built-ins are ACTIVE capabilities",
      total(registry, "airt_registry_capabilities", lifecycle="ACTIVE") >= 9, registry.get("airt_registry_capabilities"))
check("policy: the high-risk step was denied by rule deny-high",
      total(policy, "airt_policy_decisions_total", decision="DENY", rule="deny-high") >= 1,
      policy.get("airt_policy_decisions_total"))
check("policy: the release note's writes were allowed by rule allow-workspace-writes",
      total(policy, "airt_policy_decisions_total", decision="ALLOW", rule="allow-workspace-writes") >= 1,
      policy.get("airt_policy_decisions_total"))
check("policy: decisions were timed", total(policy, "airt_policy_evaluation_seconds_count") >= 3)
check("workflow: steps succeeded", total(workflow, "airt_workflow_steps_total", status="SUCCEEDED") >= 1,
      workflow.get("airt_workflow_steps_total"))
check("workflow: a step was denied", total(workflow, "airt_workflow_steps_total", status="DENIED") >= 1,
      workflow.get("airt_workflow_steps_total"))
check("workflow: a step waited for approval",
      total(workflow, "airt_workflow_steps_total", status="AWAITING_APPROVAL") >= 1)
check("workflow: the approval was approved by a human",
      total(workflow, "airt_workflow_approval_decisions_total", decision="APPROVED") >= 1)
check("workflow: no approval is pending any more", total(workflow, "airt_workflow_approvals_pending") == 0)
check("workflow: the release workflow completed", total(workflow, "airt_workflows", status="COMPLETED") >= 1)
print("metrics: every service's /metrics parses and counts what happened")
