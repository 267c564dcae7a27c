// Bearer-token authentication on every route (the OpenAPI document and 404s
// included: nothing about the API is visible without the token). The token
// is compared in constant time and never logged.
import type { FastifyReply, FastifyRequest } from "fastify";
import { FerryError } from "../../core/errors.ts";
import { tokenMatches } from "../token.ts";

const BEARER_RE = /^Bearer ([^\s]+)$/i;

export function bearerAuth(token: string) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const header = req.headers.authorization;
    const m = typeof header === "string" ? BEARER_RE.exec(header) : null;
    const given = m?.[1];
    if (given !== undefined && tokenMatches(token, given)) return;
    const err =
      given === undefined
        ? new FerryError("FERRY_ERR_UNAUTHORIZED", "missing bearer token (Authorization: Bearer <token from the agent's authTokenFile>)")
        : new FerryError("FERRY_ERR_UNAUTHORIZED", "invalid bearer token");
    await reply
      .code(err.status)
      .header("www-authenticate", given === undefined ? 'Bearer realm="ferry-agent"' : 'Bearer realm="ferry-agent", error="invalid_token"')
      .type("application/json")
      .send(err.toJSON());
  };
}
