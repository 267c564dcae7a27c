// TypeBox as fastify's type provider (@fastify/type-provider-typebox is not
// a dependency; this is all of it): a route's request types are the Static
// types of its schemas, which fastify has validated before the handler runs.
import type { FastifyBaseLogger, FastifyInstance, FastifyTypeProvider, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from "fastify";
import type { Static, TSchema } from "typebox";

export interface TypeBoxProvider extends FastifyTypeProvider {
  validator: this["schema"] extends TSchema ? Static<this["schema"]> : unknown;
  serializer: this["schema"] extends TSchema ? Static<this["schema"]> : unknown;
}

export type FerryFastify = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxProvider>;

/** Documentation a route adds to the OpenAPI document (route `config.openapi`). */
export interface RouteDoc {
  summary: string;
  /** A request body that fastify does not validate (optional bodies, e.g. on DELETE). */
  body?: TSchema;
}

declare module "fastify" {
  interface FastifyContextConfig {
    openapi?: RouteDoc;
    /** Served without the bearer token and left out of the OpenAPI document (static files that carry no data). */
    public?: boolean;
  }
}
