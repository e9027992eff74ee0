// Typed errors: every failed call rejects with an AirtError carrying the gRPC
// code, the service's ErrorInfo reason and every field violation (none when
// the error carried no details, e.g. UNAVAILABLE before any connection).

import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

export interface Violation {
  field: string;
  description: string;
}

export class AirtError extends Error {
  /** The gRPC code's name, e.g. `INVALID_ARGUMENT`, `PERMISSION_DENIED`. */
  readonly code: string;
  /** The ErrorInfo reason, e.g. `SELF_APPROVAL`; undefined without details. */
  readonly reason: string | undefined;
  readonly violations: Violation[];
  readonly metadata: Record<string, string>;

  constructor(code: string, message: string, reason?: string, violations: Violation[] = [], metadata: Record<string, string> = {}) {
    super(`${code}: ${message}${reason ? ` [${reason}]` : ""}${violations.map((v) => `\n  - ${v.field}: ${v.description}`).join("")}`);
    this.name = "AirtError";
    this.code = code;
    this.reason = reason;
    this.violations = violations;
    this.metadata = metadata;
  }
}

/** `Code.InvalidArgument` as `INVALID_ARGUMENT`. */
function codeName(code: Code): string {
  return (Code[code] ?? "Unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Fields of one message: `(field number, bytes or string)` for length-delimited fields. */
function fields(bytes: Uint8Array): Array<[number, Uint8Array]> {
  const reader = new BinaryReader(bytes);
  const found: Array<[number, Uint8Array]> = [];
  while (reader.pos < reader.len) {
    const [number, type] = reader.tag();
    if (type === WireType.LengthDelimited) {
      found.push([number, reader.bytes()]);
    } else {
      reader.skip(type);
    }
  }
  return found;
}

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** The typed error for anything a call threw. */
export function toAirtError(error: unknown): AirtError {
  if (error instanceof AirtError) return error;
  const failure = ConnectError.from(error);
  let reason: string | undefined;
  const violations: Violation[] = [];
  const metadata: Record<string, string> = {};
  for (const detail of failure.details) {
    if (!("value" in detail) || !(detail.value instanceof Uint8Array)) continue;
    const type = "type" in detail ? String(detail.type) : "";
    if (type === "google.rpc.ErrorInfo") {
      for (const [number, value] of fields(detail.value)) {
        if (number === 1) reason = text(value);
        if (number === 3) {
          const entry = Object.fromEntries(fields(value).map(([n, v]) => [n, text(v)]));
          if (entry[1] !== undefined) metadata[entry[1]] = entry[2] ?? "";
        }
      }
    } else if (type === "google.rpc.BadRequest") {
      for (const [number, value] of fields(detail.value)) {
        if (number !== 1) continue;
        const entry = Object.fromEntries(fields(value).map(([n, v]) => [n, text(v)]));
        violations.push({ field: entry[1] ?? "", description: entry[2] ?? "" });
      }
    }
  }
  return new AirtError(codeName(failure.code), failure.rawMessage, reason || undefined, violations, metadata);
}
