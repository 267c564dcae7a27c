// Bearer-token authentication on every controller route (the OpenAPI document
// and 404s included): the agent's, with the controller's realm and token file.
import { bearerAuth as bearer } from "../agent/http/auth.ts";

export const bearerAuth = (token: string): ReturnType<typeof bearer> => bearer(token, { realm: "ferry-controller", tokenSource: "the controller's tokenFile" });
