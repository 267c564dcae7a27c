// A simulated host for the agent's tests: a sysfs fixture (one 82599 PF with
// stand-in VFs, or real ones with `realVfs`), a host config file, state and run dirs, all in one temp dir;
// guest RAM files in a dir of its own under /dev/shm (removed by cleanup).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseHostConfig } from "../host/config.ts";
import type { HostConfig } from "../host/config.ts";
import { writeSysfsFixture } from "../host/fixture.ts";
import type { FixtureResult } from "../host/fixture.ts";
import { fakePf } from "../host/testdata/fake-pf.ts";
import type { FakePf } from "../host/testdata/fake-pf.ts";
import { loggedToFile, recordingSeam } from "../host/testdata/recording-seam.ts";
import type { RecordingSeam } from "../host/testdata/recording-seam.ts";
import type { VfSeam } from "../host/vf-setup.ts";

export interface TestHost {
  dir: string;
  configPath: string;
  config: HostConfig;
  fixture: FixtureResult;
  /** The VFs of the fixture's PF, in order. */
  vfs: string[];
  /** Where QEMU binaries the host allows for local migration go (qemuBinaries). */
  qemuDir: string;
  cleanup(): Promise<void>;
}

/**
 * `realVfs`: the uplink has no standIns (its VFs go to guests as vfio-pci and
 * go through the VF lifecycle: tests pass the agent a recording VfSeam, as
 * this machine has no SR-IOV), with these network and release settings.
 */
export interface RealVfOptions {
  vlan?: number;
  spoofchk?: boolean;
  trust?: boolean;
  onRelease?: { mac?: string; restoreDriver?: boolean };
}

export async function makeTestHost(o: { name?: string; numVfs?: number; port?: number; netns?: string; lab?: boolean; saveDir?: string; network?: string; realVfs?: RealVfOptions } = {}): Promise<TestHost> {
  const network = o.network ?? "physnet1";
  // Short prefix: QMP socket paths must fit in 107 bytes.
  const dir = await mkdtemp(join(tmpdir(), "fa-"));
  const memoryDir = `/dev/shm/ferry-test-${basename(dir)}`;
  const fixture = await writeSysfsFixture(join(dir, "sys"), { pfs: [{ vendor: "intel-82599", numVfs: o.numVfs ?? 4, numaNode: 0 }] });
  const pf = fixture.pfs[0];
  if (!pf) throw new Error("fixture has no PF");
  const r = o.realVfs;
  const yaml = [
    `name: ${o.name ?? "host-a"}`,
    `sysfsRoot: sys`,
    `stateDir: state`,
    `runDir: run`,
    `memoryDir: ${memoryDir}`,
    `qemuBinaries: [qemu]`,
    `listen: { address: 127.0.0.1, port: ${o.port ?? 7601} }`,
    `networks:`,
    `  ${network}: ${JSON.stringify({ ...(o.netns ? { netns: o.netns } : {}), ...(r?.vlan === undefined ? {} : { vlan: r.vlan }), ...(r?.spoofchk === undefined ? {} : { spoofchk: r.spoofchk }), ...(r?.trust === undefined ? {} : { trust: r.trust }) })}`,
    `uplinks:`,
    `  - pf: ${pf.bdf}`,
    `    network: ${network}`,
    r ? (r.onRelease ? `    onRelease: ${JSON.stringify(r.onRelease)}` : "") : `    standIns: { vfs: all, model: rtl8139 }`,
    ...(o.lab ? ["lab: true"] : []),
    ...(o.saveDir ? [`saveDir: ${o.saveDir}`] : []),
    ``,
  ].join("\n");
  const configPath = join(dir, "host.yaml");
  await writeFile(configPath, yaml);
  return {
    dir,
    configPath,
    config: parseHostConfig(yaml, { source: configPath }),
    fixture,
    vfs: pf.vfs.map((v) => v.bdf),
    qemuDir: join(dir, "qemu"),
    cleanup: async () => {
      await rm(dir, { recursive: true, force: true });
      await rm(memoryDir, { recursive: true, force: true });
    },
  };
}

/**
 * The stand-ins for a `realVfs` host's SR-IOV hardware: a fake PF (its
 * netlink; VFs start with MAC zero, VLAN 0, spoofchk on, trust off) and the
 * recording seam over it (the PCI driver core; VFs start on ixgbevf), with
 * the seam's log kept in `<dir>/seam.log` after every call.
 */
export interface RecordingVfs {
  pf: FakePf;
  /** The fixture PF's netdev name. */
  pfName: string;
  seam: RecordingSeam;
  /** `seam`, its log written to `logFile` after every call: what the agent gets. */
  vfSeam: VfSeam;
  logFile: string;
}

export function recordingVfs(host: TestHost): RecordingVfs {
  const p = host.fixture.pfs[0]!;
  const pf = fakePf(p.ifname, p.vfs.map(() => ({ mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false })));
  const seam = recordingSeam(host.config.sysfsRoot, pf, Object.fromEntries(p.vfs.map((x) => [x.bdf, { driver: "ixgbevf", hostDriver: "ixgbevf" }])));
  const logFile = join(host.dir, "seam.log");
  return { pf, pfName: p.ifname, seam, vfSeam: loggedToFile(seam, logFile), logFile };
}
