// The web dashboard at /ui: plain ES modules, CSS and one HTML page from
// src/api/ui/, served as they are (no build step) and without the token —
// they carry no data. The page asks for the token, keeps it in the tab's
// sessionStorage and sends it as the bearer on every API call.
import { readFile, readdir } from "node:fs/promises";
import { extname, join } from "node:path";
import type { FastifyReply } from "fastify";
import { FerryError } from "../core/errors.ts";
import type { ControllerFastify } from "./deps.ts";

export const UI_DIR = join(import.meta.dirname, "ui");

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
};

// Only the page's own origin: no inline script, no third-party anything; the token never leaves for elsewhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface UiFile {
  type: string;
  body: Buffer;
}

/** The servable files of `dir` by name (the served types only: not tsconfig.json), read once. */
async function loadFiles(dir: string): Promise<Map<string, UiFile>> {
  const files = new Map<string, UiFile>();
  for (const name of await readdir(dir)) {
    const type = TYPES[extname(name)];
    if (type !== undefined) files.set(name, { type, body: await readFile(join(dir, name)) });
  }
  return files;
}

export function uiRoutes(app: ControllerFastify, o: { dir?: string } = {}): void {
  let files: Promise<Map<string, UiFile>> | null = null;
  const send = async (name: string, reply: FastifyReply): Promise<void> => {
    files ??= loadFiles(o.dir ?? UI_DIR);
    const f = (await files).get(name);
    if (!f) {
      const e = new FerryError("FERRY_ERR_NOT_FOUND", `no dashboard file ${name}: the dashboard starts at /ui/`);
      return reply.code(e.status).type("application/json").send(e.toJSON());
    }
    return reply
      .header("content-security-policy", CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .header("cache-control", "no-cache")
      .type(f.type)
      .send(f.body);
  };
  const config = { public: true } as const;
  // static files, not API: hidden from the OpenAPI document (@fastify/swagger reads schema.hide)
  const schema = { hide: true };
  // the query goes along (the page reads ?poll=SECONDS)
  app.get("/ui", { config, schema }, (req, reply) => {
    const q = req.url.indexOf("?");
    return reply.redirect(q < 0 ? "/ui/" : `/ui/${req.url.slice(q)}`, 302);
  });
  app.get("/ui/", { config, schema }, (_req, reply) => send("index.html", reply));
  app.get<{ Params: { file: string } }>("/ui/:file", { config, schema }, (req, reply) => send(req.params.file, reply));
}
