// Errors → HTTP problem bodies `{ code, message, retryable, details }`, with
// the status from ERROR_CODES. Fastify's own validation errors become
// FERRY_ERR_INVALID naming the field; anything unknown becomes
// FERRY_ERR_INTERNAL with no stack or message of its own in the body.
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { FerryError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { PATTERN_RULES } from "./schema.ts";

interface ValidationItem {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** "/holder/vmUuid" + missingProperty → "holder.vmUuid"; array indexes as [n]. */
export function fieldOf(item: ValidationItem): string {
  const parts = item.instancePath.split("/").filter((p) => p !== "").map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
  const missing = item.params["missingProperty"];
  if (item.keyword === "required" && typeof missing === "string") parts.push(missing);
  const extra = item.params["additionalProperty"];
  if (item.keyword === "additionalProperties" && typeof extra === "string") parts.push(extra);
  return parts.reduce((s, p) => (/^\d+$/.test(p) ? `${s}[${p}]` : s ? `${s}.${p}` : p), "");
}

/** A validation error in words: the rule the value breaks (never a regex), for the first error of `all`. */
export function ruleOf(first: ValidationItem, all: readonly ValidationItem[]): string {
  switch (first.keyword) {
    case "pattern": {
      const rule = PATTERN_RULES.get(String(first.params["pattern"]));
      return `must be ${rule ?? "in the form /openapi.json describes"}`;
    }
    case "const":
    case "enum": {
      // a union of literals: every branch's value at this place
      const allowed = all.filter((x) => x.instancePath === first.instancePath && (x.keyword === "const" || x.keyword === "enum"))
        .flatMap((x) => (x.keyword === "const" ? [x.params["allowedValue"]] : Array.isArray(x.params["allowedValues"]) ? (x.params["allowedValues"] as unknown[]) : []));
      return `must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`;
    }
    case "additionalProperties":
      return "unknown field (not in this request's schema; see /openapi.json)";
    case "required":
      return "required";
    default:
      return first.message ?? "is invalid";
  }
}

function isFastifyError(e: unknown): e is FastifyError & { validation?: ValidationItem[]; validationContext?: string } {
  return e instanceof Error && ("statusCode" in e || "validation" in e);
}

export interface ProblemOptions {
  /** The app's body limit in bytes (said in a 413's message). */
  bodyLimit?: number;
}

export function toProblem(e: unknown, requestId: string, o: ProblemOptions = {}): { error: FerryError; internal: boolean } {
  if (e instanceof FerryError) return { error: e, internal: false };
  if (isFastifyError(e) && Array.isArray(e.validation) && e.validation.length > 0) {
    const first = e.validation[0];
    const where = e.validationContext ?? "body";
    const field = first ? fieldOf(first) || `(${where})` : `(${where})`;
    const why = first ? ruleOf(first, e.validation) : "is invalid";
    return { error: new FerryError("FERRY_ERR_INVALID", `${field}: ${why}`, { details: { field, in: where, keyword: first?.keyword } }), internal: false };
  }
  if (isFastifyError(e) && e.statusCode === 413) {
    const limit = o.bodyLimit === undefined ? "the limit" : `the limit of ${o.bodyLimit} bytes`;
    return { error: new FerryError("FERRY_ERR_TOO_LARGE", `the request body is larger than ${limit}: send less (no Ferry request needs more)`, { details: { field: "(body)", fastifyCode: e.code, ...(o.bodyLimit === undefined ? {} : { limitBytes: o.bodyLimit }) } }), internal: false };
  }
  if (isFastifyError(e) && e.statusCode === 415) {
    return { error: new FerryError("FERRY_ERR_MEDIA_TYPE", "the request body must be JSON: send it with content-type application/json", { details: { field: "(body)", fastifyCode: e.code } }), internal: false };
  }
  if (isFastifyError(e) && typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    // malformed JSON, an empty JSON body, a bad content-length, …
    return { error: new FerryError("FERRY_ERR_INVALID", e.message, { details: { field: "(body)", fastifyCode: e.code, status: e.statusCode } }), internal: false };
  }
  return {
    error: new FerryError("FERRY_ERR_INTERNAL", `internal error (request ${requestId}); see the agent's log`, { details: { requestId } }),
    internal: true,
  };
}

export function errorHandler(log: Logger, o: ProblemOptions = {}) {
  return (e: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const { error, internal } = toProblem(e, req.id, o);
    if (internal) log.error({ err: e, requestId: req.id, method: req.method, url: req.routeOptions.url }, "request failed");
    else if (error.status >= 500) log.error({ code: error.code, message: error.message, requestId: req.id }, "request failed");
    return reply.code(error.status).type("application/json").send(error.toJSON());
  };
}
