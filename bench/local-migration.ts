// Local migration (QEMU upgrade in place) against a normal copying migration
// of the same guest, both with guest RAM holding random data.
//   scripts/rt node bench/local-migration.ts [--quick]
// Ferry local: the agent's localMigrate (shared RAM file + x-ignore-shared),
// timed end to end around the call, plus QEMU's total-time and bytes sent.
// Copying: the same kind of guest without shared RAM, migrated into a second
// instance on this host with a plain `migrate` (what a local migration costs
// without Ferry's shared-memory setup).
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Agent } from "../src/agent/agent.ts";
import { localMigrate } from "../src/agent/migration/local.ts";
import { migrateOut } from "../src/agent/migration/steps.ts";
import { makeTestHost } from "../src/agent/testing.ts";
import { guestCmdline } from "../src/model/guest.ts";
import { guestImagePaths } from "../src/model/guest-image.ts";
import type { VmSpec } from "../src/model/vm.ts";
import { waitForConsole } from "../src/qemu/console.ts";
import { startInstance } from "../src/qemu/instance.ts";
import { prepareIncoming } from "../src/qemu/migration.ts";
import { machine, table, writeResult } from "./lib/report.ts";

const quick = process.argv.includes("--quick");
const sizes = quick ? [1024] : [1024, 4096];
const FILL = 0.45; // the initramfs tmpfs holds at most half of RAM

/** MemAvailable from /proc/meminfo, MiB. */
async function availableMiB(): Promise<number> {
  const m = /^MemAvailable:\s+(\d+) kB/m.exec(await readFile("/proc/meminfo", "utf8"));
  return m ? Math.floor(Number(m[1]) / 1024) : 0;
}

interface Row { sizeMiB: number; filledMiB: number; kind: string; endToEndMs: number; qemuTotalMs: number; downtimeMs: number; sentMiB: number }

async function main(): Promise<void> {
  const host = await makeTestHost({ name: "bench-local" });
  const agent = await Agent.open({ config: host.config });
  const ctx = agent.stepContext();
  const img = await guestImagePaths();
  const rows: Row[] = [];
  const skipped: { sizeMiB: number; why: string }[] = [];
  try {
    for (const sizeMiB of sizes) {
      // the copying migration runs two instances of the guest at once; leave 2 GiB for everything else
      const availMiB = await availableMiB();
      if (availMiB < 2 * sizeMiB + 2048) {
        const why = `only ${availMiB} MiB available, the copying migration of a ${sizeMiB} MiB guest needs ${2 * sizeMiB + 2048} MiB`;
        console.log(`skipping ${sizeMiB} MiB: ${why}`);
        skipped.push({ sizeMiB, why });
        continue;
      }
      const fill = Math.floor(sizeMiB * FILL);
      for (const shared of [true, false]) {
        const uuid = randomUUID();
        const spec: VmSpec = {
          uuid, name: `bench${sizeMiB}`, memoryMiB: sizeMiB, vcpus: 1, kernel: img.kernel, initrd: img.initrd,
          cmdline: guestCmdline(`bench${sizeMiB}`, [], { fillMiB: fill }), nics: [],
          ...(shared ? { sharedMemory: true } : {}),
        };
        const view = await agent.startInstance(spec);
        try {
          await waitForConsole(view.serialLog, /ferry-ready/, { timeoutMs: 600_000 });
          const t0 = performance.now();
          if (shared) {
            const r = await localMigrate(ctx, { instanceId: view.instanceId, unplugMs: 15_000, timeoutMs: 600_000, primaryBackMs: 5_000 }, AbortSignal.timeout(900_000));
            rows.push({ sizeMiB, filledMiB: fill, kind: "Ferry local (shared RAM)", endToEndMs: performance.now() - t0, qemuTotalMs: r.totalMs, downtimeMs: r.downtimeMs, sentMiB: r.transferredBytes / 2 ** 20 });
            await agent.stopInstance(r.newInstanceId);
          } else {
            const src = agent.getInstance(view.instanceId);
            const dst = await startInstance({ runDir: host.config.runDir, spec, accel: agent.accel.accel, incoming: true });
            try {
              const uri = await prepareIncoming(dst.qmp, "tcp:127.0.0.1:0");
              const info = await migrateOut(ctx, src, uri, { setup: {}, until: "completed", unplugMs: 15_000, timeoutMs: 900_000 }, AbortSignal.timeout(900_000));
              rows.push({ sizeMiB, filledMiB: fill, kind: "copying migration", endToEndMs: performance.now() - t0, qemuTotalMs: info.totalTimeMs ?? 0, downtimeMs: info.downtimeMs ?? 0, sentMiB: (info.ram?.transferred ?? 0) / 2 ** 20 });
            } finally {
              dst.kill();
              await dst.waitExit(5_000);
              dst.qmp.close();
              await dst.remove();
            }
            await agent.stopInstance(view.instanceId);
          }
        } catch (e) {
          await agent.stopInstance(view.instanceId).catch(() => undefined);
          throw e;
        }
      }
    }
  } finally {
    for (const i of (await agent.listInstances()).instances) await agent.stopInstance(i.instanceId).catch(() => undefined);
    await agent.close();
    await host.cleanup();
  }
  const f = (x: number): string => x.toFixed(0);
  console.log(`Local migration (${agent.accel.accel}, ${machine(agent.accel.accel)["cpus"] as number} cores), guest RAM ${Math.round(FILL * 100)} % random data\n`);
  console.log(table(["guest", "random data", "migration", "end to end ms", "QEMU total ms", "downtime ms", "sent MiB"], rows.map((r) => [`${r.sizeMiB} MiB`, `${r.filledMiB} MiB`, r.kind, f(r.endToEndMs), f(r.qemuTotalMs), f(r.downtimeMs), r.sentMiB.toFixed(1)])));
  const big = rows.find((r) => r.sizeMiB === 4096 && r.kind.startsWith("Ferry"));
  for (const s of skipped) console.log(`${s.sizeMiB} MiB not measured: ${s.why}`);
  if (big) console.log(`\ntarget: end to end ≤ 500 ms for 4 GiB — ${big.endToEndMs <= 500 ? "met" : "NOT met"} (${f(big.endToEndMs)} ms)`);
  console.log(`wrote ${writeResult("local-migration", { machine: machine(agent.accel.accel), quick, rows, skipped })}`);
}

await main();
