// Bearer-token authentication on every route (the OpenAPI document and 404s
// included: nothing about the API is visible without the token), but routes
// with `config: { public: true }` (the dashboard's static files, which carry
// no data). The token is compared in constant time and never logged.
import type { FastifyReply, FastifyRequest } from "fastify";
import { FerryError } from "../errors.ts";
import { tokenMatches } from "./token.ts";

const BEARER_RE = /^Bearer ([^\s]+)$/i;

/** `realm` names the service; `tokenSource` tells an operator where the token lives. (Both apps: server.ts.) */
export function bearerAuth(token: string, o: { realm: string; tokenSource: string }) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (req.routeOptions.config.public === true) return;
    const header = req.headers.authorization;
    const m = typeof header === "string" ? BEARER_RE.exec(header) : null;
    const given = m?.[1];
    if (given !== undefined && tokenMatches(token, given)) return;
    const err =
      given === undefined
        ? new FerryError("FERRY_ERR_UNAUTHORIZED", `missing bearer token (Authorization: Bearer <token from ${o.tokenSource}>)`)
        : new FerryError("FERRY_ERR_UNAUTHORIZED", `invalid bearer token: send the token in ${o.tokenSource}`);
    await reply
      .code(err.status)
      .header("www-authenticate", given === undefined ? `Bearer realm="${o.realm}"` : `Bearer realm="${o.realm}", error="invalid_token"`)
      .type("application/json")
      .send(err.toJSON());
  };
}
