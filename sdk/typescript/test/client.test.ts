// The SDK against a running stack in development auth mode (addresses from
// AIRT_REGISTRY_ADDR, AIRT_POLICY_ADDR, AIRT_WORKFLOW_ADDR).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { AirtError, Client, FINISHED } from "../src/index.js";

const POLICY = `
default: DENY
rules:
  - {id: no-deletes, when: {capability: io.fs.delete}, decision: DENY, reason: Nothing is deleted here}
  - {id: allow-the-rest, decision: ALLOW, reason: Low-risk workspace work}
`;

const admin = Client.fromEnv({ principal: "user:root", roles: ["admin"] });
const alice = admin.asPrincipal("user:alice");
const unique = () => randomUUID().slice(0, 8);

const opened: Client[] = [admin, alice];
const as = (principal: string, roles: string[] = []) => {
  const client = admin.asPrincipal(principal, roles);
  opened.push(client);
  return client;
};

before(async () => {
  await admin.policy.put(POLICY);
});

after(() => opened.forEach((client) => client.close()));

function release(id: string) {
  return {
    name: `ts-release-${id}`,
    steps: [
      { name: "draft", capability: "io.fs.write_file", inputs: { path: `ts-${id}.md`, content: "v1" } },
      { name: "ship", type: "HUMAN_APPROVAL", depends_on: ["draft"], approval: { approver_roles: ["release_manager"], message: `Ship ${id}?` } },
      { name: "publish", capability: "io.fs.copy", depends_on: ["ship"], inputs: { from: `ts-${id}.md`, to: `ts-${id}-out.md` } },
    ],
  };
}

test("the agent flow pauses for a human and completes after approval", async () => {
  const id = unique();
  const capability = await admin.registry.register(`
id: ts.notify_${id}
name: Notify
operation_type: WRITE
risk: {level: MEDIUM}
side_effects: {reversible: true, scope: EXTERNAL}
compensation: {supported: true, strategy: MANUAL}
parameters: [{name: channel, type: string, required: true}]
metadata: {version: 1.0.0}
handler: "http:https://notify.example/send"
`);
  assert.deepEqual([capability.id, capability.version, capability.risk], [`ts.notify_${id}`, "1.0.0", "MEDIUM"]);
  const run = await alice.workflows.submit(release(id), `req-${id}`);
  const kinds: string[] = [];
  for await (const event of alice.workflows.watch(run.id)) kinds.push(event.kind);
  assert.equal(kinds[0], "workflow.submitted");
  assert.ok(kinds.includes("approval.requested"), kinds.join());
  assert.equal((await alice.workflows.submit(release(id), `req-${id}`)).id, run.id);

  const bob = as("user:bob", ["release_manager"]);
  const approvals = [];
  for await (const approval of bob.approvals.list({ workflowId: run.id })) approvals.push(approval);
  assert.equal(approvals.length, 1);
  await assert.rejects(as("user:alice", ["release_manager"]).approvals.approve(approvals[0].id), (error: AirtError) =>
    error.code === "PERMISSION_DENIED" && error.reason === "SELF_APPROVAL");
  assert.equal((await bob.approvals.approve(approvals[0].id, "ship it")).status, "APPROVED");
  const done = await alice.workflows.wait(run.id, FINISHED, 30_000);
  assert.equal(done.status, "COMPLETED", done.failureReason);
  assert.equal(done.steps.find((s) => s.name === "publish")?.decision?.ruleId, "allow-the-rest");
  for (const service of ["registry", "policy", "workflow"] as const) {
    const check = await admin.audit.verify(service);
    assert.ok(check.intact && check.eventsChecked > 0n, `${service}: ${check.problem}`);
  }
});

test("a denied step names its rule and runs nothing", async () => {
  const id = unique();
  const run = await alice.workflows.submit(`name: ts-tidy-${id}\nsteps:\n  - {name: rm, capability: io.fs.delete, inputs: {path: ts-${id}}}\n`);
  const done = await alice.workflows.wait(run.id);
  assert.equal(done.status, "FAILED");
  const step = done.steps[0];
  assert.deepEqual([step.status, step.decision?.decision, step.decision?.ruleId], ["DENIED", "DENY", "no-deletes"]);
});

test("an invalid spec rejects with INVALID_ARGUMENT and every violation", async () => {
  await assert.rejects(
    alice.workflows.submit("name: bad\nsteps:\n  - {name: a, capability: NOPE}\n  - {name: a, capability: x.y, depends_on: [ghost]}\n"),
    (error: AirtError) =>
      error.code === "INVALID_ARGUMENT" && error.reason === "INVALID_WORKFLOW" && error.violations.length >= 2 &&
      error.violations.every((v) => v.field.startsWith("spec.")),
  );
});

test("an error without details is still typed", async () => {
  const nowhere = new Client({ workflow: "127.0.0.1:9", principal: "user:alice", timeoutMs: 2000 });
  opened.push(nowhere);
  await assert.rejects(nowhere.workflows.get("anything"), (error: AirtError) =>
    error instanceof AirtError && error.code === "UNAVAILABLE" && error.reason === undefined && error.violations.length === 0);
});

test("a watch resumed after its last sequence misses and repeats nothing", async () => {
  const run = await alice.workflows.submit(release(unique()));
  // Interrupted after three events (the stream is cancelled), then resumed.
  const first: bigint[] = [];
  for await (const event of alice.workflows.watch(run.id)) {
    first.push(event.sequence);
    if (first.length === 3) break;
  }
  for await (const event of alice.workflows.watch(run.id, first[first.length - 1])) first.push(event.sequence);
  first.forEach((sequence, i) => assert.equal(sequence, BigInt(i + 1)));
  assert.equal((await alice.workflows.get(run.id)).status, "PAUSED");
  await alice.workflows.cancel(run.id, { rollback: true, reason: "resume test" });
  const rest: bigint[] = [];
  for await (const event of alice.workflows.watch(run.id, first[first.length - 1])) rest.push(event.sequence);
  assert.ok(rest.length > 0);
  rest.forEach((sequence, i) => assert.equal(sequence, first[first.length - 1] + BigInt(i + 1)));
  assert.equal((await alice.workflows.get(run.id)).status, "ROLLED_BACK");
});

test("listing pages through everything once", async () => {
  const id = unique();
  const ids = new Set<string>();
  for (let i = 0; i < 3; i++) {
    ids.add((await alice.workflows.submit(`name: ts-page-${id}\nsteps:\n  - {name: t, capability: sys.info.get_time}\n`)).id);
  }
  const listed: string[] = [];
  for await (const workflow of alice.workflows.list({ name: `ts-page-${id}`, pageSize: 2 })) listed.push(workflow.id);
  assert.deepEqual(listed.sort(), [...ids].sort());
});

test("plain JSON inputs reach the handler unchanged", async () => {
  const document = { count: 7, ratio: 0.25, negative: -3, flag: true, none: null, nested: { list: [1, "two", 3.5, { deep: [0] }] } };
  const run = await alice.workflows.submit({
    name: `ts-json-${unique()}`,
    steps: [{ name: "q", capability: "data.json.query", inputs: { data: document, pointer: "" } }],
  });
  const done = await alice.workflows.wait(run.id);
  assert.equal(done.status, "COMPLETED", done.failureReason);
  assert.deepEqual((done.steps[0].outputs as { value: unknown }).value, document);
  assert.equal(done.steps[0].attempt, 1);
  const check = await admin.audit.verify("workflow");
  assert.equal(typeof check.eventsChecked, "bigint");
});

test("policy questions are answered without running anything", async () => {
  const allowed = await admin.policy.evaluate("io.fs.write_file", { risk: "LOW", principal: "agent:planner", inputs: { path: "a.txt" } });
  assert.deepEqual([allowed.decision, allowed.ruleId], ["ALLOW", "allow-the-rest"]);
  const denied = await admin.policy.evaluate("io.fs.delete", { risk: "MEDIUM", principal: "agent:planner" });
  assert.deepEqual([denied.decision, denied.ruleId, denied.reason], ["DENY", "no-deletes", "Nothing is deleted here"]);
});

test("one capability runs as a governed action", async () => {
  const id = unique();
  const done = await alice.actions.execute("io.fs.write_file", { path: `ts-act-${id}.txt`, content: "hi" }, { requestId: `act-${id}` });
  assert.equal(done.status, "SUCCEEDED", done.error);
  assert.equal((done.outputs as { size: number }).size, 2);
  const again = await alice.actions.execute("io.fs.write_file", { path: `ts-act-${id}.txt`, content: "hi" }, { requestId: `act-${id}` });
  assert.deepEqual([again.workflowId, again.created], [done.workflowId, false]);
  const got = await alice.actions.get(done.workflowId);
  assert.deepEqual([got.status, got.outputs, got.created], ["SUCCEEDED", done.outputs, false]);
  const denied = await alice.actions.execute("io.fs.delete", { path: `ts-act-${id}.txt` });
  assert.deepEqual([denied.status, denied.decision?.ruleId, denied.outputs], ["DENIED", "no-deletes", undefined]);
});
