// The event stream (server-sent events): migration phases and outcomes, host
// up/down, VM lifecycle. Without follow, the buffered events, then the end;
// with ?follow=1, then every new one until the client goes away.
import type { ControllerEvent } from "../../wire/events.ts";
import { systemClock } from "../../core/clock.ts";
import { EventQuery } from "../../wire/controller-api.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";

function frame(e: ControllerEvent): string {
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

export function eventRoutes(app: ControllerFastify, { controller, clock = systemClock }: ControllerAppDeps): void {
  app.get(
    "/v1/events",
    { schema: { querystring: EventQuery }, config: { openapi: { summary: "Server-sent events (text/event-stream): each `data:` is one JSON event with seq and type; ?follow=1 keeps the stream open; ?after=SEQ skips older ones" } } },
    (req, reply) => {
      const follow = req.query.follow === "1" || req.query.follow === "true";
      const header = req.headers["last-event-id"];
      const after = Number(req.query.after ?? (typeof header === "string" && /^[0-9]{1,15}$/.test(header) ? header : "0"));
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: follow ? "keep-alive" : "close" });
      let last = after;
      for (const e of controller.events.since(after)) {
        res.write(frame(e));
        last = e.seq;
      }
      if (!follow) {
        res.end();
        return;
      }
      const unsubscribe = controller.events.subscribe((e) => {
        if (e.seq > last) res.write(frame(e));
      });
      const closed = new AbortController();
      void (async () => {
        while (!closed.signal.aborted) {
          await clock.sleep(15_000, closed.signal).then(() => res.write(": ping\n\n"), () => undefined);
        }
      })();
      const stop = (): void => {
        closed.abort();
        unsubscribe();
      };
      req.raw.on("close", stop);
      res.on("close", stop);
    },
  );
}
