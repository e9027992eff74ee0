"""The Grand Unified scenario from a Python client generated with grpcio-tools.

Usage: grand_unified.py GEN_DIR WORKSPACE REGISTRY POLICY WORKFLOW
(the three services run in development auth mode; WORKSPACE is the workflow
service's sandbox root). Prints "N passed, M failed" and exits non-zero on
any failure.
"""
import os
import sys
import time

gen_dir, workspace, registry_addr, policy_addr, workflow_addr = sys.argv[1:6]
sys.path.insert(0, gen_dir)

import grpc  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

from airt.audit.v1 import audit_pb2, audit_pb2_grpc  # noqa: E402
from airt.policy.v1 import policy_pb2, policy_pb2_grpc  # noqa: E402
from airt.registry.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
from airt.workflow.v1 import workflow_pb2, workflow_pb2_grpc  # noqa: E402

ADMIN = [("x-airt-principal", "user:root"), ("x-airt-roles", "admin")]
ALICE = [("x-airt-principal", "user:alice")]
FINAL = {"WORKFLOW_STATUS_" + s for s in ["COMPLETED", "FAILED", "ROLLED_BACK", "COMPENSATION_FAILED", "CANCELLED", "PAUSED"]}

results = []


def check(name, condition, detail=""):
    results.append(condition)
    print(("PASS " if condition else "FAIL ") + name + ("" if condition else f": {detail}"))


registry = registry_pb2_grpc.RegistryServiceStub(grpc.insecure_channel(registry_addr))
policy = policy_pb2_grpc.PolicyServiceStub(grpc.insecure_channel(policy_addr))
workflows = workflow_pb2_grpc.WorkflowServiceStub(grpc.insecure_channel(workflow_addr))
audit = audit_pb2_grpc.AuditServiceStub(grpc.insecure_channel(workflow_addr))

# 1. Register a HIGH-risk capability (a remote shredding service; built-in
#    handlers are published by the workflow service alone).
SHRED = """
id: gut.shred_file
name: Shred a file
operation_type: DELETE
risk: {level: HIGH, justification: destroys data}
side_effects: {reversible: true, scope: LOCAL}
compensation: {supported: true, strategy: MANUAL}
parameters: [{name: path, type: string, required: true}]
metadata: {version: 1.0.0}
handler: "http:https://shredder.example/shred"
"""
registered = registry.RegisterCapability(registry_pb2.RegisterCapabilityRequest(spec_text=SHRED), metadata=ADMIN)
check("the HIGH-risk capability is registered", registered.capability.spec.risk.level == 3, registered)

# 2. The policy: HIGH risk is denied.
policy.PutPolicySet(
    policy_pb2.PutPolicySetRequest(
        source_yaml="rules:\n  - {id: deny-high, when: {risk_level: HIGH}, decision: DENY, reason: High-risk operations are not allowed}\n"
        "  - {id: allow-rest, decision: ALLOW}\n",
        activate=True,
    ),
    metadata=ADMIN,
)

# 3. A real file, and a workflow that would delete it.
target = os.path.join(workspace, "grand_unified.txt")
with open(target, "wb") as f:
    f.write(b"precious bytes")

for preflight in ("true", "false"):
    spec = f"name: grand_unified\noptions: {{preflight: {preflight}}}\nsteps:\n  - {{name: shred, agent: cleaner, capability: gut.shred_file, inputs: {{path: grand_unified.txt}}}}\n"
    submitted = workflows.SubmitWorkflow(workflow_pb2.SubmitWorkflowRequest(spec_text=spec), metadata=ALICE)
    final = None
    for update in workflows.WatchWorkflow(workflow_pb2.WatchWorkflowRequest(workflow_id=submitted.workflow.workflow_id), metadata=ALICE):
        if workflow_pb2.WorkflowStatus.Name(update.workflow.status) in FINAL:
            final = update.workflow
            break
    status = workflow_pb2.WorkflowStatus.Name(final.status)
    check(f"preflight {preflight}: FAILED", status == "WORKFLOW_STATUS_FAILED", status)
    check(f"preflight {preflight}: the reason names the rule", "rule deny-high" in final.failure_reason, final.failure_reason)
    step = final.steps[0]
    check(f"preflight {preflight}: the handler never ran", step.attempt == 0 and workflow_pb2.StepStatus.Name(step.status) == "STEP_STATUS_DENIED", step)
    with open(target, "rb") as f:
        check(f"preflight {preflight}: the file is byte-for-byte unchanged", f.read() == b"precious bytes")

# 4. Structured error details from an invalid submission.
try:
    workflows.SubmitWorkflow(workflow_pb2.SubmitWorkflowRequest(spec_text="name: bad\nsteps:\n  - {name: a, capability: NOPE}\n"), metadata=ALICE)
    check("an invalid workflow is refused", False, "accepted")
except grpc.RpcError as error:
    check("an invalid workflow is INVALID_ARGUMENT", error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.code())
    details = rpc_status.from_call(error).details
    fields, reasons = [], []
    for detail in details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append((info.reason, info.domain))
    check("BadRequest names the field", fields == ["spec.steps[0].capability"], fields)
    check("ErrorInfo has the reason and domain", reasons == [("INVALID_WORKFLOW", "airt.dev")], reasons)

# 5. The decision is in the intact audit chain.
report = audit.VerifyAuditChain(audit_pb2.VerifyAuditChainRequest(), metadata=ADMIN)
check("the workflow audit chain is intact", report.intact, report)
decided = audit.ListAuditEvents(audit_pb2.ListAuditEventsRequest(action="step.decided", page_size=100), metadata=ADMIN)
check("the decisions are in the audit chain", any("deny-high" in str(e.details) for e in decided.events), decided)

passed = sum(results)
failed = len(results) - passed
print(f"python: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
