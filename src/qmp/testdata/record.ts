// Records golden QMP transcripts from the real QEMU on this machine:
//   scripts/rt node src/qmp/testdata/record.ts
// Each transcript is JSON lines {"dir": "c" | "s", "line": "<raw line>"}.
// The unit tests replay them (src/qmp/replay.ts) without QEMU.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

interface Entry { dir: "c" | "s"; line: string }

class Recorder {
  entries: Entry[] = [];
  #buf = "";
  #waiters: ((l: string) => void)[] = [];
  #lines: string[] = [];
  readonly sock: Socket;
  constructor(sock: Socket) {
    this.sock = sock;
    sock.on("data", (d: Buffer) => {
      this.#buf += d.toString("utf8");
      let i: number;
      while ((i = this.#buf.indexOf("\n")) >= 0) {
        const line = this.#buf.slice(0, i).replace(/\r$/, "");
        this.#buf = this.#buf.slice(i + 1);
        if (!line.trim()) continue;
        this.entries.push({ dir: "s", line });
        const w = this.#waiters.shift();
        if (w) w(line); else this.#lines.push(line);
      }
    });
  }
  next(): Promise<string> {
    const l = this.#lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => this.#waiters.push(r));
  }
  async send(obj: Record<string, unknown>): Promise<string[]> {
    const line = JSON.stringify(obj);
    this.entries.push({ dir: "c", line });
    this.sock.write(line + "\n");
    const got: string[] = [];
    for (;;) {
      const l = await this.next();
      got.push(l);
      if (l.includes('"return"') || l.includes('"error"')) return got;
    }
  }
  async until(re: RegExp, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      if (this.entries.some((e) => e.dir === "s" && re.test(e.line))) return;
      if (Date.now() > end) throw new Error(`timeout waiting for ${re}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function qemu(dir: string, name: string, extra: string[] = []): Promise<{ rec: Recorder; kill: () => void }> {
  const sockPath = join(dir, `${name}.sock`);
  const p = spawn("qemu-system-x86_64", ["-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-m", "64M",
    "-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x3",
    "-qmp", `unix:${sockPath},server=on,wait=off`, ...extra], { stdio: "ignore" });
  for (let i = 0; ; i++) {
    try {
      const s = await new Promise<Socket>((res, rej) => { const c = connect(sockPath); c.once("connect", () => res(c)); c.once("error", rej); });
      const rec = new Recorder(s);
      await rec.next();
      return { rec, kill: () => p.kill("SIGKILL") };
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

const out = new URL(".", import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), "ferry-rec-"));
try {
  // 1. basic: negotiation, queries, errors, stop/cont events, device add/del refused
  {
    const { rec, kill } = await qemu(dir, "basic");
    await rec.send({ execute: "qmp_capabilities", id: "1" });
    await rec.send({ execute: "query-status", id: "2" });
    await rec.send({ execute: "query-version", id: "3" });
    await rec.send({ execute: "no-such-command", id: "4" });
    await rec.send({ execute: "device_del", arguments: { id: "nope" }, id: "5" });
    await rec.send({ execute: "stop", id: "6" });
    await rec.until(/"STOP"/);
    await rec.send({ execute: "cont", id: "7" });
    await rec.until(/"RESUME"/);
    await rec.send({ execute: "query-migrate", id: "8" });
    await writeFile(join(out, "basic.jsonl"), rec.entries.map((e) => JSON.stringify(e)).join("\n") + "\n");
    kill();
  }
  // 2. a real migration between two instances, source side, with pause-before-switchover
  {
    const dst = await qemu(dir, "dst", ["-incoming", "defer"]);
    await dst.rec.send({ execute: "qmp_capabilities", id: "d1" });
    await dst.rec.send({ execute: "migrate-set-capabilities", arguments: { capabilities: [{ capability: "events", state: true }] }, id: "d2" });
    await dst.rec.send({ execute: "migrate-incoming", arguments: { uri: "tcp:127.0.0.1:0" }, id: "d3" });
    const q = await dst.rec.send({ execute: "query-migrate", id: "d4" });
    const port = (JSON.parse(q.at(-1)!) as { return: { "socket-address": { port: string }[] } }).return["socket-address"][0]!.port;
    const src = await qemu(dir, "src");
    const rec = src.rec;
    await rec.send({ execute: "qmp_capabilities", id: "1" });
    await rec.send({ execute: "migrate-set-capabilities", arguments: { capabilities: [{ capability: "events", state: true }, { capability: "pause-before-switchover", state: true }] }, id: "2" });
    await rec.send({ execute: "migrate-set-parameters", arguments: { "downtime-limit": 300 }, id: "3" });
    await rec.send({ execute: "migrate", arguments: { uri: `tcp:127.0.0.1:${port}` }, id: "4" });
    await rec.until(/pre-switchover/);
    await rec.send({ execute: "query-migrate", id: "5" });
    await rec.send({ execute: "migrate-continue", arguments: { state: "pre-switchover" }, id: "6" });
    await rec.until(/"completed"/);
    await rec.send({ execute: "query-migrate", id: "7" });
    await writeFile(join(out, "migration-source.jsonl"), rec.entries.map((e) => JSON.stringify(e)).join("\n") + "\n");
    src.kill();
    dst.kill();
  }
  console.log(`recorded transcripts into ${out}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
