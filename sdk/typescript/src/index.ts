export { Client, FINISHED, RESTING } from "./client.js";
export type { ActionResult, Approval, Capability, ChainCheck, ClientOptions, Decision, Step, Workflow, WorkflowEvent } from "./client.js";
export { AirtError, toAirtError } from "./errors.js";
export type { Violation } from "./errors.js";
