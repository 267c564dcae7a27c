import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { bootMemsum, guestMemsum, guestMemtouch, parseMemsum } from "./memcheck.ts";

const MD5 = "e3a52810d94622450f1682c930bbb7c6";
// As QEMU logs it (the guest tty turns \n into \r\n), heartbeats around the replies.
const CONSOLE = `ferry-memsum boot ${MD5}\r\nferry-ready t1\r\nferry-heartbeat 1\r\nferry-memsum abc123 16aceae5c5355cd79fffb839d1b4af65\r\nferry-heartbeat 2\r\n`;

describe("parseMemsum", () => {
  it("finds the reply to one token, and only a complete line", () => {
    assert.equal(parseMemsum(CONSOLE, "boot"), MD5);
    assert.equal(parseMemsum(CONSOLE, "abc123"), "16aceae5c5355cd79fffb839d1b4af65");
    assert.equal(parseMemsum(CONSOLE, "abc12"), undefined, "a token's prefix is not the token");
    assert.equal(parseMemsum(`ferry-memsum t1 ${MD5.slice(0, 20)}`, "t1"), undefined, "half a line is no answer yet");
    assert.equal(parseMemsum(`ferry-memsum t1 ${MD5}\n`, "t1"), MD5);
    assert.equal(parseMemsum("ferry-memsum t1 off\r\n", "t1"), "off");
  });
  it("refuses an answer that is no md5", () => {
    assert.throws(() => parseMemsum("ferry-memsum t1 12345\r\n", "t1"), (e: unknown) => isFerryError(e, "FERRY_ERR_STATE") && /rebuild the guest image/.test(e.message));
  });
  it("refuses a token the guest would ignore", () => {
    assert.throws(() => parseMemsum(CONSOLE, "a b"), (e: unknown) => isFerryError(e, "FERRY_ERR_INTERNAL"));
  });
});

describe("bootMemsum", () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), "ferry-memcheck-"))));
  after(async () => rm(dir, { recursive: true, force: true }));

  it("reads the boot line", async () => {
    await writeFile(join(dir, "a.log"), CONSOLE);
    assert.equal(await bootMemsum(join(dir, "a.log")), MD5);
  });
  it("says when the image predates the check, or the guest turned it off", async () => {
    await writeFile(join(dir, "b.log"), "ferry-ready t1\r\nferry-heartbeat 1\r\n");
    await assert.rejects(bootMemsum(join(dir, "b.log")), (e: unknown) => isFerryError(e, "FERRY_ERR_GUEST_IMAGE") && /npm run setup/.test(e.message));
    await writeFile(join(dir, "c.log"), "ferry-memsum boot off\r\nferry-ready t1\r\n");
    await assert.rejects(bootMemsum(join(dir, "c.log")), (e: unknown) => isFerryError(e, "FERRY_ERR_STATE") && /ferry\.memcheck=0/.test(e.message));
  });
  it("waits for the line up to its deadline", async () => {
    const log = join(dir, "d.log");
    await writeFile(log, "");
    await assert.rejects(bootMemsum(log, { timeoutMs: 100 }), (e: unknown) => isFerryError(e, "FERRY_ERR_TIMEOUT") && /wait for ferry-ready/.test(e.message));
    const later = bootMemsum(log, { timeoutMs: 5_000 });
    await writeFile(log, CONSOLE);
    assert.equal(await later, MD5);
  });
});

/** A stand-in for QEMU's serial socket: `reply` answers each line the client writes. */
async function fakeConsole(path: string, reply: (line: string, s: Socket) => void): Promise<Server> {
  const server = createServer((s) => {
    let buf = "";
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        reply(buf.slice(0, i), s);
        buf = buf.slice(i + 1);
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

describe("guestMemsum over the serial socket", () => {
  let dir: string;
  const servers: Server[] = [];
  before(async () => (dir = await mkdtemp(join(tmpdir(), "ferry-memcheck-"))));
  after(async () => {
    for (const s of servers) s.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("sends memsum <token> and reads the answer, split across writes and among heartbeats", async () => {
    const seen: string[] = [];
    const path = join(dir, "serial.sock");
    servers.push(await fakeConsole(path, (line, s) => {
      seen.push(line);
      const [cmd, token] = line.split(" ");
      if (cmd === "memsum") {
        s.write(`ferry-heartbeat 7\r\nferry-memsum ${token} ${MD5.slice(0, 10)}`);
        setTimeout(() => s.write(`${MD5.slice(10)}\r\nferry-heartbeat 8\r\n`), 30);
      } else if (cmd === "memtouch") s.write(`ferry-memtouch ${token} done\r\n`);
    }));
    assert.equal(await guestMemsum(dir, { timeoutMs: 5_000 }), MD5, "an instance dir");
    assert.equal(await guestMemsum({ serialSocket: path }, { timeoutMs: 5_000 }), MD5, "the socket");
    assert.equal(await guestMemsum({ serialLog: join(dir, "serial.log") }, { timeoutMs: 5_000 }), MD5, "the log beside it");
    await guestMemtouch(dir, { timeoutMs: 5_000 });
    assert.equal(seen.length, 4);
    assert.match(seen[0]!, /^memsum [0-9a-f]{12}$/);
    assert.notEqual(seen[0], seen[1], "a new token each request");
    assert.match(seen[3]!, /^memtouch [0-9a-f]{12}$/);
  });

  it("an answer to another token is not the answer", async () => {
    const sub = join(dir, "other");
    await mkdir(sub);
    servers.push(await fakeConsole(join(sub, "serial.sock"), (_line, s) => s.write(`ferry-memsum 000000000000 ${MD5}\r\n`)));
    await assert.rejects(guestMemsum(sub, { timeoutMs: 300 }), (e: unknown) => isFerryError(e, "FERRY_ERR_TIMEOUT") && /did not answer 'memsum [0-9a-f]+'/.test(e.message) && /one at a time/.test(e.message));
  });

  it("says what is wrong: no socket, nobody listening, QEMU gone, memcheck off, aborted", async () => {
    await assert.rejects(guestMemsum(join(dir, "nope"), { timeoutMs: 1_000 }), (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_FOUND") && /restart it/.test(e.message));
    const stale = join(dir, "stale");
    await mkdir(stale);
    const s = await fakeConsole(join(stale, "serial.sock"), () => undefined);
    await new Promise<void>((resolve) => s.close(() => resolve()));
    await writeFile(join(stale, "serial.sock"), ""); // the file left behind, nobody listening
    await assert.rejects(guestMemsum({ serialSocket: join(stale, "serial.sock") }, { timeoutMs: 1_000 }), (e: unknown) => isFerryError(e, "FERRY_ERR_GUEST_LOST") && /nothing listens/.test(e.message));
    const gone = join(dir, "gone.sock");
    servers.push(await fakeConsole(gone, (_line, c) => c.destroy()));
    await assert.rejects(guestMemsum({ serialSocket: gone }, { timeoutMs: 1_000 }), (e: unknown) => isFerryError(e, "FERRY_ERR_GUEST_LOST") && /exited/.test(e.message));
    const off = join(dir, "off.sock");
    servers.push(await fakeConsole(off, (line, c) => c.write(`ferry-memsum ${line.split(" ")[1]} off\r\n`)));
    await assert.rejects(guestMemsum({ serialSocket: off }, { timeoutMs: 1_000 }), (e: unknown) => isFerryError(e, "FERRY_ERR_STATE") && /ferry\.memcheck=0/.test(e.message));
    const silent = join(dir, "silent.sock");
    servers.push(await fakeConsole(silent, () => undefined));
    const ac = new AbortController();
    const p = guestMemsum({ serialSocket: silent }, { timeoutMs: 5_000, signal: ac.signal });
    ac.abort();
    await assert.rejects(p, (e: unknown) => isFerryError(e, "FERRY_ERR_ABORTED"));
  });
});
