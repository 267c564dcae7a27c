// Bearer-token authentication on every controller route (the OpenAPI document
// and 404s included). Compared in constant time; never logged.
import type { FastifyReply, FastifyRequest } from "fastify";
import { tokenMatches } from "../agent/token.ts";
import { FerryError } from "../core/errors.ts";

const BEARER_RE = /^Bearer ([^\s]+)$/i;

export function bearerAuth(token: string) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const header = req.headers.authorization;
    const m = typeof header === "string" ? BEARER_RE.exec(header) : null;
    const given = m?.[1];
    if (given !== undefined && tokenMatches(token, given)) return;
    const err =
      given === undefined
        ? new FerryError("FERRY_ERR_UNAUTHORIZED", "missing bearer token (Authorization: Bearer <token from the controller's tokenFile>)")
        : new FerryError("FERRY_ERR_UNAUTHORIZED", "invalid bearer token");
    await reply
      .code(err.status)
      .header("www-authenticate", given === undefined ? 'Bearer realm="ferry-controller"' : 'Bearer realm="ferry-controller", error="invalid_token"')
      .type("application/json")
      .send(err.toJSON());
  };
}
