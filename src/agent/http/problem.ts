// Errors → HTTP problem bodies `{ code, message, retryable, details }`, with
// the status from ERROR_CODES. Fastify's own validation errors become
// FERRY_ERR_INVALID naming the field; anything unknown becomes
// FERRY_ERR_INTERNAL with no stack or message of its own in the body.
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { FerryError } from "../../core/errors.ts";
import type { Logger } from "../../core/log.ts";

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

function isFastifyError(e: unknown): e is FastifyError & { validation?: ValidationItem[]; validationContext?: string } {
  return e instanceof Error && ("statusCode" in e || "validation" in e);
}

export function toProblem(e: unknown, requestId: string): { error: FerryError; internal: boolean } {
  if (e instanceof FerryError) return { error: e, internal: false };
  if (isFastifyError(e) && Array.isArray(e.validation) && e.validation.length > 0) {
    const first = e.validation[0];
    const where = e.validationContext ?? "body";
    const field = first ? fieldOf(first) || `(${where})` : `(${where})`;
    const why = first?.message ?? "is invalid";
    return { error: new FerryError("FERRY_ERR_INVALID", `${field}: ${why}`, { details: { field, in: where, keyword: first?.keyword } }), internal: false };
  }
  if (isFastifyError(e) && typeof e.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500) {
    // malformed JSON, wrong content type, body too large, …
    return { error: new FerryError("FERRY_ERR_INVALID", e.message, { details: { field: "(body)", fastifyCode: e.code, status: e.statusCode } }), internal: false };
  }
  return {
    error: new FerryError("FERRY_ERR_INTERNAL", `internal error (request ${requestId}); see the agent's log`, { details: { requestId } }),
    internal: true,
  };
}

export function errorHandler(log: Logger) {
  return (e: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const { error, internal } = toProblem(e, req.id);
    if (internal) log.error({ err: e, requestId: req.id, method: req.method, url: req.routeOptions.url }, "request failed");
    else if (error.status >= 500) log.error({ code: error.code, message: error.message, requestId: req.id }, "request failed");
    return reply.code(error.status).type("application/json").send(error.toJSON());
  };
}
