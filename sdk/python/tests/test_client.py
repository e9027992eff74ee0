"""The SDK against the real services: the whole agent flow, denials with
their reasons, typed errors with and without details, a watch resumed where
it stopped, pages, and numbers that stay what they were."""

import pytest

import airt
from airt import errors


def release(unique):
    return f"""
name: release-{unique}
steps:
  - {{name: draft, capability: io.fs.write_file, inputs: {{path: "sdk-{unique}-notes.md", content: "v1"}}}}
  - name: ship
    type: HUMAN_APPROVAL
    depends_on: [draft]
    approval: {{approver_roles: [release_manager], message: "Ship {unique}?"}}
  - {{name: publish, capability: io.fs.copy, depends_on: [ship],
     inputs: {{from: "sdk-{unique}-notes.md", to: "sdk-{unique}-published.md"}}}}
"""


def test_the_agent_flow_pauses_for_a_human_and_completes_after_approval(admin, alice, unique):
    capability = admin.registry.register(
        f"""
id: sdk.notify_{unique}
name: Notify
operation_type: WRITE
risk: {{level: MEDIUM}}
side_effects: {{reversible: true, scope: EXTERNAL}}
compensation: {{supported: true, strategy: MANUAL}}
parameters: [{{name: channel, type: string, required: true}}]
metadata: {{version: 1.0.0}}
handler: "http:https://notify.example/send"
""")
    assert (capability.id, capability.version, capability.risk) == (f"sdk.notify_{unique}", "1.0.0", "MEDIUM")

    run = alice.workflows.submit(release(unique), request_id=f"release-{unique}")
    kinds = [event.kind for event in alice.workflows.watch(run.id)]
    assert kinds[0] == "workflow.submitted" and "approval.requested" in kinds
    paused = alice.workflows.get(run.id)
    assert paused.status == "PAUSED" and paused.step("draft").status == "SUCCEEDED"
    # The same request again is the same workflow.
    assert alice.workflows.submit(release(unique), request_id=f"release-{unique}").id == run.id

    bob = admin.as_principal("user:bob", roles=["release_manager"])
    [approval] = list(bob.approvals.list(workflow_id=run.id))
    assert approval.message == f"Ship {unique}?" and approval.approver_roles == ["release_manager"]
    with pytest.raises(errors.PermissionDenied) as refused:
        alice.as_principal("user:alice", roles=["release_manager"]).approvals.approve(approval.id)
    assert refused.value.reason == "SELF_APPROVAL"
    assert bob.approvals.approve(approval.id, "ship it").status == "APPROVED"

    done = alice.workflows.wait(run.id, until=airt.FINISHED, timeout=30)
    assert done.status == "COMPLETED", done.failure_reason
    assert done.step("publish").decision.rule_id == "allow-the-rest"
    for service in ("registry", "policy", "workflow"):
        check = admin.audit.verify(service)
        assert check.intact and check.events_checked > 0, (service, check)


def test_a_denied_step_names_its_rule_and_runs_nothing(alice, unique):
    run = alice.workflows.submit(
        f"name: tidy-{unique}\nsteps:\n  - {{name: rm, capability: io.fs.delete, inputs: {{path: sdk-{unique}}}}}\n")
    done = alice.workflows.wait(run.id)
    assert done.status == "FAILED"
    step = done.step("rm")
    assert step.status == "DENIED" and step.decision.decision == "DENY"
    assert step.decision.rule_id == "no-deletes" and "Nothing is deleted here" in done.failure_reason


def test_an_invalid_spec_raises_invalid_argument_with_every_violation(alice):
    with pytest.raises(errors.InvalidArgument) as invalid:
        alice.workflows.submit("name: bad\nsteps:\n  - {name: a, capability: NOPE}\n  - {name: a, capability: x.y, depends_on: [ghost]}\n")
    error = invalid.value
    assert error.reason == "INVALID_WORKFLOW"
    assert len(error.violations) >= 2 and all(v.field.startswith("spec.") for v in error.violations)
    assert "INVALID_ARGUMENT" in str(error)


def test_an_error_without_details_is_still_typed():
    with airt.Client(workflow="127.0.0.1:9", principal="user:alice", timeout=2) as nowhere:
        with pytest.raises(errors.Unavailable) as unavailable:
            nowhere.workflows.get("anything")
    assert unavailable.value.reason is None and unavailable.value.violations == []


def test_a_watch_resumed_after_its_last_sequence_misses_and_repeats_nothing(alice, unique):
    run = alice.workflows.submit(release(unique))
    # Interrupted after three events (the stream is cancelled), then resumed.
    first = []
    for event in alice.workflows.watch(run.id):
        first.append(event.sequence)
        if len(first) == 3:
            break
    first += [event.sequence for event in alice.workflows.watch(run.id, after_sequence=first[-1])]
    assert first == list(range(1, first[-1] + 1))
    assert alice.workflows.get(run.id).status == "PAUSED"
    alice.workflows.cancel(run.id, rollback=True, reason="resume test")
    rest = [event.sequence for event in alice.workflows.watch(run.id, after_sequence=first[-1])]
    assert rest and rest == list(range(first[-1] + 1, rest[-1] + 1))
    assert alice.workflows.get(run.id).status == "ROLLED_BACK"


def test_listing_pages_through_everything_once(alice, unique):
    ids = {alice.workflows.submit(f"name: page-{unique}\nsteps:\n  - {{name: t, capability: sys.info.get_time}}\n").id
           for _ in range(3)}
    listed = [w.id for w in alice.workflows.list(name=f"page-{unique}", page_size=2)]
    assert sorted(listed) == sorted(ids) and len(listed) == 3


def test_json_inputs_reach_the_handler_unchanged_and_numbers_keep_their_type(alice, unique):
    document = {"count": 7, "ratio": 0.25, "big": 2**53, "negative": -3, "flag": True, "none": None,
                "nested": {"list": [1, "two", 3.5, {"deep": [0]}]}}
    run = alice.workflows.submit({
        "name": f"json-{unique}",
        "initial_state": {"doc": document},
        "steps": [{"name": "q", "capability": "data.json.query", "inputs": {"data": document, "pointer": ""}}],
    })
    done = alice.workflows.wait(run.id)
    assert done.status == "COMPLETED", done.failure_reason
    outputs = done.step("q").outputs
    assert outputs["value"] == document
    assert type(outputs["value"]["count"]) is int and type(outputs["value"]["ratio"]) is float
    assert done.step("q").attempt == 1 and type(done.step("q").attempt) is int


def test_an_exported_chain_verifies_offline_and_a_changed_event_is_named(admin, alice, unique):
    alice.workflows.wait(alice.workflows.submit(
        {"name": f"audit-{unique}", "steps": [{"name": "t", "capability": "sys.info.get_time"}]}).id)
    lines = list(admin.audit.export("workflow"))
    check = airt.chain.verify_export(lines)
    assert check.intact and check.events_checked == len(lines) > 0, check
    assert check.events_checked == admin.audit.verify("workflow").events_checked
    import json
    middle = len(lines) // 2
    event = json.loads(lines[middle])
    event["actor"] = "user:mallory"
    tampered = lines[:middle] + [json.dumps(event)] + lines[middle + 1:]
    broken = airt.chain.verify_export(tampered)
    assert not broken.intact and broken.first_broken_sequence == event["sequence"]
    assert "changed" in broken.problem
    gap = airt.chain.verify_export(lines[:middle] + lines[middle + 1:])
    assert not gap.intact and "missing" in gap.problem


def test_policy_questions_are_answered_without_running_anything(admin):
    allowed = admin.policy.evaluate("io.fs.write_file", risk="LOW", principal="agent:planner", inputs={"path": "a.txt"})
    assert (allowed.decision, allowed.rule_id) == ("ALLOW", "allow-the-rest")
    denied = admin.policy.evaluate("io.fs.delete", risk="MEDIUM", principal="agent:planner")
    assert (denied.decision, denied.rule_id, denied.reason) == ("DENY", "no-deletes", "Nothing is deleted here")


def test_one_capability_runs_as_a_governed_action(alice, unique):
    done = alice.actions.execute("io.fs.write_file", {"path": f"act-{unique}.txt", "content": "hi"},
                                 request_id=f"act-{unique}")
    assert done.status == "SUCCEEDED" and done.outputs["size"] == 2 and done.created
    assert done.decision.rule_id == "allow-the-rest"
    again = alice.actions.execute("io.fs.write_file", {"path": f"act-{unique}.txt", "content": "hi"},
                                  request_id=f"act-{unique}")
    assert (again.workflow_id, again.created) == (done.workflow_id, False)
    got = alice.actions.get(done.workflow_id)
    assert (got.status, got.outputs, got.created) == ("SUCCEEDED", done.outputs, False)
    denied = alice.actions.execute("io.fs.delete", {"path": f"act-{unique}.txt"})
    assert denied.status == "DENIED" and denied.decision.rule_id == "no-deletes" and denied.outputs is None
