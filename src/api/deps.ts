// What the controller's HTTP layer needs: the controller (operations), the token, a logger.
import type { FerryFastify } from "../core/http/type-provider.ts";
import type { Controller } from "../controller/controller.ts";
import type { Leadership } from "../controller/leadership.ts";
import type { Evacuations } from "../controller/evacuation.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";

export type ControllerFastify = FerryFastify;

export interface ControllerAppDeps {
  controller: Controller;
  /** The bearer token every request must carry. */
  token: string;
  version: string;
  log?: Logger;
  /** For the event stream's keep-alive (default the system clock). */
  clock?: Clock;
  /** Which controller leads (default: this one alone, term 1, as with SQLite); a follower forwards writes to the leader. */
  leadership?: Leadership;
  /** How a follower reaches the leader (default global fetch; with TLS the controller's client certificate). */
  leaderFetch?: typeof fetch;
  /** Drain and evacuation (default: built over the controller; stopped when the app closes). */
  evacuations?: Evacuations;
}

/** A route file: registers one resource's routes. */
export type RouteFile = (app: ControllerFastify, deps: ControllerAppDeps) => void;
