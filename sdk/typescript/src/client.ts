// One client for the registry, policy and workflow services: `new Client()`.
//
// Values are plain JSON (google.protobuf.Struct and Value travel as
// JsonObject/JsonValue), int64 fields are `bigint`, enums are their names
// without prefix ("COMPLETED"), and every failure is an AirtError.

import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";

import * as audit from "./gen/airt/audit/v1/audit_pb.js";
import * as common from "./gen/airt/common/v1/common_pb.js";
import * as policy from "./gen/airt/policy/v1/policy_pb.js";
import * as registry from "./gen/airt/registry/v1/registry_pb.js";
import * as wf from "./gen/airt/workflow/v1/workflow_pb.js";
import { AirtError, toAirtError } from "./errors.js";

export interface ClientOptions {
  /** `host:port`, `http://host:port` or `https://host:port`; default `airt up`'s ports. */
  registry?: string;
  policy?: string;
  workflow?: string;
  /** A bearer token (JWT). */
  token?: string;
  /** Development auth mode only: who is calling (`user:alice`) and with which roles. */
  principal?: string;
  roles?: string[] | string;
  /** PEM CA bundle for `https://` addresses (default: Node's roots). */
  ca?: string | Buffer;
  /** Per-call deadline in milliseconds (default 30 s). */
  timeoutMs?: number;
}

export interface Decision {
  decision: string;
  ruleId: string;
  reason: string;
  escalated: boolean;
  policyRevision: string;
}

export interface Step {
  name: string;
  status: string;
  attempt: number;
  outputs: JsonValue | undefined;
  error: string;
  decision: Decision | undefined;
  approvalId: string;
}

export interface Workflow {
  id: string;
  name: string;
  status: string;
  steps: Step[];
  failureReason: string;
  failedStep: string;
  traceId: string;
  raw: wf.Workflow;
}

export interface WorkflowEvent {
  sequence: bigint;
  kind: string;
  step: string;
  detail: JsonObject;
  workflow: Workflow;
}

export interface Approval {
  id: string;
  workflowId: string;
  step: string;
  status: string;
  capabilityId: string;
  message: string;
  approverRoles: string[];
  resolvedInputs: JsonObject;
  decision: Decision | undefined;
  raw: wf.Approval;
}

export interface Capability {
  id: string;
  version: string;
  risk: string;
  lifecycle: string;
  contentDigest: string;
  raw: registry.Capability;
}

export interface ActionResult {
  /** SUCCEEDED, DENIED, FAILED, AWAITING_APPROVAL, REJECTED, EXPIRED, CANCELLED, or RUNNING when the wait ran out. */
  status: string;
  workflowId: string;
  outputs: JsonValue | undefined;
  error: string;
  decision: Decision | undefined;
  approval: { id: string; message: string; approverRoles: string[] } | undefined;
  created: boolean;
}

export interface ChainCheck {
  intact: boolean;
  eventsChecked: bigint;
  firstBrokenSequence: bigint;
  problem: string;
}

/** Where a workflow rests: it will not change without someone acting. */
export const FINISHED = ["COMPLETED", "FAILED", "ROLLED_BACK", "COMPENSATION_FAILED", "CANCELLED"] as const;
export const RESTING = [...FINISHED, "PAUSED"] as const;

const DEFAULTS = { registry: "127.0.0.1:50051", policy: "127.0.0.1:50052", workflow: "127.0.0.1:50053" };
type Spec = string | Record<string, unknown>;

const specText = (spec: Spec) => (typeof spec === "string" ? spec : JSON.stringify(spec));
const name = (names: Record<number, string>, value: number) => names[value] ?? `UNKNOWN_${value}`;

function decisionOf(record: policy.DecisionRecord | undefined): Decision | undefined {
  if (!record) return undefined;
  return {
    decision: name(policy.Decision, record.decision),
    ruleId: record.ruleId,
    reason: record.reason,
    escalated: record.escalated,
    policyRevision: record.policyRevision,
  };
}

function workflowOf(raw: wf.Workflow | undefined): Workflow {
  if (!raw) throw new AirtError("INTERNAL", "the answer carries no workflow");
  return {
    id: raw.workflowId,
    name: raw.spec?.name ?? "",
    status: name(wf.WorkflowStatus, raw.status),
    steps: raw.steps.map((step) => ({
      name: step.name,
      status: name(wf.StepStatus, step.status),
      attempt: step.attempt,
      outputs: step.outputs ? toJson(ValueSchema, step.outputs) : undefined,
      error: step.error,
      decision: decisionOf(step.decision),
      approvalId: step.approvalId,
    })),
    failureReason: raw.failureReason,
    failedStep: raw.failedStep,
    traceId: raw.traceId,
    raw,
  };
}

function approvalOf(raw: wf.Approval | undefined): Approval {
  if (!raw) throw new AirtError("INTERNAL", "the answer carries no approval");
  return {
    id: raw.approvalId,
    workflowId: raw.workflowId,
    step: raw.stepName,
    status: name(wf.ApprovalStatus, raw.status),
    capabilityId: raw.capabilityId,
    message: raw.message,
    approverRoles: [...raw.approverRoles],
    resolvedInputs: raw.resolvedInputs ?? {},
    decision: decisionOf(raw.decision),
    raw,
  };
}

function capabilityOf(raw: registry.Capability | undefined): Capability {
  if (!raw?.spec) throw new AirtError("INTERNAL", "the answer carries no capability");
  return {
    id: raw.spec.id,
    version: raw.spec.metadata?.version ?? "",
    risk: name(common.RiskLevel, raw.spec.risk?.level ?? 0),
    lifecycle: name(registry.CapabilityLifecycle, raw.spec.lifecycle),
    contentDigest: raw.contentDigest,
    raw,
  };
}

/** Runs a call; its failure as an AirtError. */
async function call<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw toAirtError(error);
  }
}

/** Every item of every page, `page(token)` answering `[items, nextToken]`. */
async function* pages<T>(page: (token: string) => Promise<[T[], string]>): AsyncGenerator<T> {
  let token = "";
  do {
    const [items, next] = await call(() => page(token));
    yield* items;
    token = next;
  } while (token);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Client {
  readonly registry: Registry;
  readonly policy: Policy;
  readonly workflows: Workflows;
  readonly actions: Actions;
  readonly approvals: Approvals;
  readonly audit: Audit;
  readonly options: ClientOptions;
  private readonly sessions: Http2SessionManager[] = [];

  constructor(options: ClientOptions = {}) {
    this.options = options;
    const roles = typeof options.roles === "string" ? options.roles.split(",").map((r) => r.trim()).filter(Boolean) : options.roles ?? [];
    const identity: Interceptor = (next) => (request) => {
      if (options.token) request.header.set("authorization", `Bearer ${options.token}`);
      if (options.principal) {
        request.header.set("x-airt-principal", options.principal);
        request.header.set("x-airt-roles", roles.join(","));
      }
      return next(request);
    };
    const transport = (address: string): Transport => {
      const tls = address.startsWith("https://");
      const baseUrl = tls || address.startsWith("http://") ? address : `http://${address}`;
      const sessionManager = new Http2SessionManager(baseUrl, {}, tls && options.ca ? { ca: options.ca } : {});
      this.sessions.push(sessionManager);
      return createGrpcTransport({
        baseUrl,
        interceptors: [identity],
        defaultTimeoutMs: options.timeoutMs ?? 30_000,
        sessionManager,
      });
    };
    const transports = {
      registry: transport(options.registry ?? DEFAULTS.registry),
      policy: transport(options.policy ?? DEFAULTS.policy),
      workflow: transport(options.workflow ?? DEFAULTS.workflow),
    };
    this.registry = new Registry(createClient(registry.RegistryService, transports.registry));
    this.policy = new Policy(createClient(policy.PolicyService, transports.policy), options.principal, roles);
    this.workflows = new Workflows(createClient(wf.WorkflowService, transports.workflow));
    this.actions = new Actions(createClient(wf.WorkflowService, transports.workflow));
    this.approvals = new Approvals(createClient(wf.ApprovalService, transports.workflow));
    this.audit = new Audit({
      registry: createClient(audit.AuditService, transports.registry),
      policy: createClient(audit.AuditService, transports.policy),
      workflow: createClient(audit.AuditService, transports.workflow),
    });
  }

  /** The `airt` CLI's variables: AIRT_REGISTRY_ADDR, AIRT_POLICY_ADDR, AIRT_WORKFLOW_ADDR, AIRT_TOKEN, AIRT_PRINCIPAL, AIRT_ROLES. */
  static fromEnv(overrides: ClientOptions = {}): Client {
    const env = process.env;
    return new Client({
      registry: env.AIRT_REGISTRY_ADDR,
      policy: env.AIRT_POLICY_ADDR,
      workflow: env.AIRT_WORKFLOW_ADDR,
      token: env.AIRT_TOKEN || undefined,
      principal: env.AIRT_PRINCIPAL || undefined,
      roles: env.AIRT_ROLES,
      ...overrides,
    });
  }

  /** The same deployment, calling as someone else (development mode). */
  asPrincipal(principal: string, roles: string[] = []): Client {
    return new Client({ ...this.options, token: undefined, principal, roles });
  }

  /** Closes the client's connections (a process with open ones keeps running). */
  close(): void {
    for (const session of this.sessions) session.abort();
  }
}

export class Registry {
  constructor(private readonly client: ReturnType<typeof createClient<typeof registry.RegistryService>>) {}

  /** Registers a capability (YAML/JSON text or an object); the same content again is a no-op. */
  async register(spec: Spec): Promise<Capability> {
    const answer = await call(() => this.client.registerCapability({ source: { case: "specText", value: specText(spec) } }));
    return capabilityOf(answer.capability);
  }

  async get(capabilityId: string, version = ""): Promise<Capability> {
    return capabilityOf((await call(() => this.client.getCapability({ capabilityId, version }))).capability);
  }

  list(pageSize = 100): AsyncGenerator<Capability> {
    return pages(async (pageToken) => {
      const page = await this.client.listCapabilities({ pageSize, pageToken });
      return [page.capabilities.map(capabilityOf), page.nextPageToken];
    });
  }
}

export class Policy {
  constructor(
    private readonly client: ReturnType<typeof createClient<typeof policy.PolicyService>>,
    private readonly principal: string | undefined,
    private readonly roles: string[],
  ) {}

  /** Stores a policy set (and activates it unless `activate` is false); its revision. */
  async put(sourceYaml: string, activate = true): Promise<string> {
    const answer = await call(() => this.client.putPolicySet({ sourceYaml, activate }));
    return answer.policySet?.revision ?? "";
  }

  /** What the active policy decides for this action (a question: nothing runs). */
  async evaluate(capabilityId: string, options: { risk?: string; principal?: string; roles?: string[]; inputs?: JsonObject } = {}): Promise<Decision> {
    const [type, ...id] = (options.principal ?? this.principal ?? "user:anonymous").split(":");
    const risk = common.RiskLevel[(options.risk ?? "LOW").toUpperCase() as keyof typeof common.RiskLevel];
    const answer = await call(() =>
      this.client.evaluate({
        context: {
          principal: { type, id: id.join(":"), roles: options.roles ?? this.roles },
          capabilityId,
          riskLevel: risk,
          inputs: options.inputs ?? {},
        },
      }),
    );
    const decision = decisionOf(answer.decision);
    if (!decision) throw new AirtError("INTERNAL", "the answer carries no decision");
    return decision;
  }
}

export class Workflows {
  constructor(private readonly client: ReturnType<typeof createClient<typeof wf.WorkflowService>>) {}

  /** Submits a workflow; a retry with the same requestId is the same workflow (another spec under it: ALREADY_EXISTS). */
  async submit(spec: Spec, requestId = ""): Promise<Workflow> {
    const answer = await call(() => this.client.submitWorkflow({ source: { case: "specText", value: specText(spec) }, requestId }));
    return workflowOf(answer.workflow);
  }

  async get(workflowId: string): Promise<Workflow> {
    return workflowOf((await call(() => this.client.getWorkflow({ workflowId }))).workflow);
  }

  list(options: { status?: string; name?: string; pageSize?: number } = {}): AsyncGenerator<Workflow> {
    const status = options.status ? wf.WorkflowStatus[options.status.toUpperCase() as keyof typeof wf.WorkflowStatus] : 0;
    return pages(async (pageToken) => {
      const page = await this.client.listWorkflows({ pageSize: options.pageSize ?? 100, pageToken, status, name: options.name ?? "" });
      return [page.workflows.map(workflowOf), page.nextPageToken];
    });
  }

  /** Every event after `afterSequence`, in order, each once, until the workflow finishes or pauses; reconnects after UNAVAILABLE from the last event received. */
  async *watch(workflowId: string, afterSequence = 0n, reconnects = 5): AsyncGenerator<WorkflowEvent> {
    let last = afterSequence;
    let failures = 0;
    for (;;) {
      try {
        for await (const message of this.client.watchWorkflow({ workflowId, afterSequence: last }, { timeoutMs: 0 })) {
          failures = 0;
          const workflow = workflowOf(message.workflow);
          for (const event of message.events) {
            last = event.sequence;
            yield { sequence: event.sequence, kind: event.kind, step: event.stepName, detail: event.detail ?? {}, workflow };
          }
          if ((RESTING as readonly string[]).includes(workflow.status)) return;
        }
        return;
      } catch (error) {
        const failure = toAirtError(error);
        failures += 1;
        if (failure.code !== "UNAVAILABLE" || failures > reconnects) throw failure;
        await sleep(Math.min(100 * 2 ** failures, 2000));
      }
    }
  }

  /** The workflow once its status is one of `until` (default: finished or paused). */
  async wait(workflowId: string, until: readonly string[] = RESTING, timeoutMs = 60_000): Promise<Workflow> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const workflow = await this.get(workflowId);
      if (until.includes(workflow.status)) return workflow;
      if (Date.now() >= deadline) throw new AirtError("DEADLINE_EXCEEDED", `workflow ${workflowId} is ${workflow.status} after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async cancel(workflowId: string, options: { rollback?: boolean; reason?: string } = {}): Promise<Workflow> {
    const answer = await call(() => this.client.cancelWorkflow({ workflowId, rollback: options.rollback ?? false, reason: options.reason ?? "" }));
    return workflowOf(answer.workflow);
  }
}

export class Actions {
  constructor(private readonly client: ReturnType<typeof createClient<typeof wf.WorkflowService>>) {}

  /** Runs one capability as a governed action (policy, approval, audit, as a workflow step);
   *  waits at most `waitMs` (default 10 s, at most 60 s). The same requestId answers with the same action. */
  async execute(capabilityId: string, inputs: JsonObject = {}, options: { requestId?: string; agent?: string; waitMs?: number } = {}): Promise<ActionResult> {
    const wait = options.waitMs === undefined ? undefined : { seconds: BigInt(Math.floor(options.waitMs / 1000)), nanos: (options.waitMs % 1000) * 1_000_000 };
    const answer = await call(() =>
      this.client.executeAction({ capabilityId, inputs, requestId: options.requestId ?? "", agent: options.agent ?? "", wait }, { timeoutMs: 70_000 }),
    );
    return actionResult(answer, answer.created);
  }

  /** Where an action stands by its workflow id, waiting at most `waitMs` (default 0, at most 60 s). */
  async get(workflowId: string, options: { waitMs?: number } = {}): Promise<ActionResult> {
    const wait = options.waitMs === undefined ? undefined : { seconds: BigInt(Math.floor(options.waitMs / 1000)), nanos: (options.waitMs % 1000) * 1_000_000 };
    const answer = await call(() => this.client.getAction({ workflowId, wait }, { timeoutMs: 70_000 }));
    return actionResult(answer, false);
  }
}

function actionResult(answer: Omit<wf.GetActionResponse, "$typeName">, created: boolean): ActionResult {
    return {
      status: name(wf.ActionStatus, answer.status),
      workflowId: answer.workflowId,
      outputs: answer.outputs ? toJson(ValueSchema, answer.outputs) : undefined,
      error: answer.error,
      decision: decisionOf(answer.decision),
      approval: answer.approval
        ? { id: answer.approval.approvalId, message: answer.approval.message, approverRoles: [...answer.approval.approverRoles] }
        : undefined,
      created,
    };
}

export class Approvals {
  constructor(private readonly client: ReturnType<typeof createClient<typeof wf.ApprovalService>>) {}

  /** The approvals the caller may see (as approver, submitter or admin), oldest first. */
  list(options: { status?: string; workflowId?: string; pageSize?: number } = {}): AsyncGenerator<Approval> {
    const wanted = (options.status ?? "PENDING").toUpperCase();
    const status = wanted === "ALL" ? 0 : wf.ApprovalStatus[wanted as keyof typeof wf.ApprovalStatus];
    return pages(async (pageToken) => {
      const page = await this.client.listApprovals({ status, workflowId: options.workflowId ?? "", pageSize: options.pageSize ?? 100, pageToken });
      return [page.approvals.map(approvalOf), page.nextPageToken];
    });
  }

  async get(approvalId: string): Promise<Approval> {
    return approvalOf((await call(() => this.client.getApproval({ approvalId }))).approval);
  }

  async approve(approvalId: string, comment = ""): Promise<Approval> {
    return approvalOf((await call(() => this.client.approveStep({ approvalId, comment }))).approval);
  }

  async reject(approvalId: string, comment = ""): Promise<Approval> {
    return approvalOf((await call(() => this.client.rejectStep({ approvalId, comment }))).approval);
  }
}

export class Audit {
  constructor(private readonly clients: Record<"registry" | "policy" | "workflow", ReturnType<typeof createClient<typeof audit.AuditService>>>) {}

  /** Asks `service` to check its hash chain. */
  async verify(service: "registry" | "policy" | "workflow" = "workflow"): Promise<ChainCheck> {
    const answer = await call(() => this.clients[service].verifyAuditChain({}));
    return {
      intact: answer.intact,
      eventsChecked: answer.eventsChecked,
      firstBrokenSequence: answer.firstBrokenSequence,
      problem: answer.problem,
    };
  }
}
