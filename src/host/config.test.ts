import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { loadHostConfig, parseHostConfig, resolveUplinks, stateFile, usableVfs } from "./config.ts";
import { writeSysfsFixture } from "./fixture.ts";
import { readInventory } from "./sysfs.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-config-"));
after(() => rm(base, { recursive: true, force: true }));

const LAB = `# a lab host
name: host-a
sysfsRoot: ./sysfs
listen:
  port: 7611
stateDir: /tmp/ferry-a/state
runDir: /tmp/ferry-a/run
networks:
  physnet1:
    bridge: br-phys1
    netns: ferry-lab
    vlan: 100
  physnet2: {}
uplinks:
  - pf: 0000:3b:00.0
    network: physnet1
    bandwidthMbps: 10000
    standIns:
      vfs: all
  - pf: enp94s0f0
    network: physnet2
    standIns:
      vfs: [0000:5e:10.1, 0000:5e:10.2]
      model: rtl8139
`;

function configError(line: number, field: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isFerryError(e, "FERRY_ERR_CONFIG"), String(e));
    assert.equal(e.details["line"], line, e.message);
    assert.match(e.message, field);
    return true;
  };
}

describe("host config", () => {
  test("a lab config with defaults filled in and relative paths resolved against the file", async () => {
    const file = join(base, "host-a.yaml");
    await writeFile(file, LAB);
    const c = await loadHostConfig(file);
    assert.equal(c.name, "host-a");
    assert.equal(c.sysfsRoot, join(base, "sysfs"));
    assert.deepEqual(c.listen, { address: "127.0.0.1", port: 7611 });
    assert.equal(stateFile(c), "/tmp/ferry-a/state/state.db");
    assert.equal(c.authTokenFile, "/tmp/ferry-a/state/token");
    assert.equal(c.portProfileExec, null);
    assert.deepEqual(c.networks, [
      { name: "physnet1", bridge: "br-phys1", netns: "ferry-lab", vlan: 100, spoofchk: null, trust: null, forwarding: "managed" },
      { name: "physnet2", bridge: null, netns: null, vlan: null, spoofchk: null, trust: null, forwarding: "managed" },
    ]);
    assert.deepEqual(c.uplinks[0]!.standIns, { vfs: "all", model: "vmxnet3" });
    assert.deepEqual(c.uplinks[1], {
      pf: "enp94s0f0",
      network: "physnet2",
      bandwidthMbps: null,
      standIns: { vfs: ["0000:5e:10.1", "0000:5e:10.2"], model: "rtl8139" },
      onRelease: { mac: "00:00:00:00:00:00", restoreDriver: false },
    });
  });

  test("real VFs: the network's spoofchk/trust and the uplink's onRelease (MAC reset to, host driver back); errors say what is expected", () => {
    const head = "name: h\nnetworks:\n  n1: { vlan: 7, spoofchk: true, trust: false }\nuplinks:\n  - pf: enp59s0f0\n    network: n1\n";
    const c = parseHostConfig(`${head}    onRelease: { mac: 02:00:00:00:00:AA, restoreDriver: true }\n`);
    assert.deepEqual([c.networks[0]!.spoofchk, c.networks[0]!.trust], [true, false]);
    assert.deepEqual(c.uplinks[0]!.onRelease, { mac: "02:00:00:00:00:aa", restoreDriver: true });
    assert.deepEqual(parseHostConfig(`${head}    onRelease: { mac: 00:00:00:00:00:00 }\n`).uplinks[0]!.onRelease, { mac: "00:00:00:00:00:00", restoreDriver: false });
    assert.throws(() => parseHostConfig(`${head}    onRelease: { mac: 01:00:5e:00:00:01 }\n`, { source: "c.yaml" }), /c\.yaml:7: uplinks\[0\]\.onRelease\.mac: .*multicast/);
    assert.throws(() => parseHostConfig(`${head}    onRelease: { driver: ixgbevf }\n`, { source: "c.yaml" }), /uplinks\[0\]\.onRelease.*driver/);
    assert.throws(() => parseHostConfig("name: h\nnetworks:\n  n1: { trust: yes please }\n", { source: "c.yaml" }), /networks\.n1\.trust/);
  });

  test("controller.advertiseUrl: the URL the controller calls the agent at (a proxy, a NAT address); validated like url", () => {
    const head = "name: h\ncontroller:\n  url: http://127.0.0.1:7600\n  tokenFile: /etc/ferry/t\n";
    assert.equal(parseHostConfig(head).controller?.advertiseUrl, undefined);
    assert.equal(parseHostConfig(`${head}  advertiseUrl: http://10.0.0.5:7601/\n`).controller?.advertiseUrl, "http://10.0.0.5:7601");
    assert.throws(() => parseHostConfig(`${head}  advertiseUrl: ftp://x\n`, { source: "c.yaml" }), /c\.yaml:5: controller\.advertiseUrl: .*http/);
  });

  test("controller.alternates: the cluster's other controllers, each validated like url", () => {
    const head = "name: h\ncontroller:\n  url: http://127.0.0.1:7600\n  tokenFile: /etc/ferry/t\n";
    assert.equal(parseHostConfig(head).controller?.alternates, undefined);
    assert.deepEqual(parseHostConfig(`${head}  alternates: [http://127.0.0.1:7601, https://10.0.0.2:7600/]\n`).controller?.alternates, ["http://127.0.0.1:7601", "https://10.0.0.2:7600"]);
    assert.throws(() => parseHostConfig(`${head}  alternates: [http://127.0.0.1:7601, ftp://x]\n`, { source: "c.yaml" }), /c\.yaml:5: controller\.alternates\[1\]: .*http/);
    assert.throws(() => parseHostConfig(`${head}  alternates: http://127.0.0.1:7601\n`, { source: "c.yaml" }), /controller\.alternates/);
  });

  test("migration: the migration network's address, port range and TLS; validated with what to do next", () => {
    const tls = "tls: { cert: /etc/ferry/tls/h.crt, key: /etc/ferry/tls/h.key, ca: /etc/ferry/tls/ca.crt }\n";
    assert.equal(parseHostConfig("name: h\n").migration, null);
    assert.deepEqual(parseHostConfig(`name: h\n${tls}migration: { address: 10.92.0.11 }\n`).migration, {
      address: "10.92.0.11",
      ports: { from: 49152, to: 49215 },
      tls: { cert: "/etc/ferry/tls/h.crt", key: "/etc/ferry/tls/h.key", ca: "/etc/ferry/tls/ca.crt" },
    });
    assert.deepEqual(parseHostConfig("name: h\nmigration: { address: 10.92.0.11, ports: [50000, 50009], tls: false }\n").migration, {
      address: "10.92.0.11",
      ports: { from: 50000, to: 50009 },
      tls: null,
    });
    const own = parseHostConfig("name: h\nmigration: { address: 10.92.0.11, tls: { cert: /m/c.crt, key: /m/c.key, ca: /m/ca.crt } }\n").migration;
    assert.deepEqual(own?.tls, { cert: "/m/c.crt", key: "/m/c.key", ca: "/m/ca.crt" });
    const bad = (text: string, re: RegExp) => assert.throws(() => parseHostConfig(`name: h\n${text}`, { source: "c.yaml" }), configError(2, re));
    bad("migration: { address: 10.92.0.11 }\n", /migration\.tls: TLS on the migration stream needs certificate files: .*migration\.tls: false for plain TCP/);
    bad("migration: { ports: [1, 2] }\n", /migration\.address: required/);
    bad("migration: { address: 127.0.0.1, tls: false }\n", /migration\.address: .*not loopback/);
    bad("migration: { address: fe80::1, tls: false }\n", /migration\.address: .*IPv4/);
    bad("migration: { address: 10.92.0.11, ports: [50010, 50000], tls: false }\n", /migration\.ports: \[50010, 50000\]: the range is empty/);
    bad("migration: { address: 10.92.0.11, ports: [80, 90], tls: false }\n", /migration\.ports\[0\]: must be between 1024 and 65535/);
    bad("migration: { address: 10.92.0.11, port: 5, tls: false }\n", /migration\.port: unknown field/);
  });

  test("errors name the file, the line and the field", () => {
    const src = "cfg.yaml";
    assert.throws(() => parseHostConfig(LAB.replace("model: rtl8139", "model: virtio"), { source: src }), configError(24, /cfg\.yaml:24: uplinks\[1\]\.standIns\.model: must be one of vmxnet3/));
    assert.throws(() => parseHostConfig(LAB.replace("vlan: 100", "vlan: 5000"), { source: src }), configError(12, /networks\.physnet1\.vlan: must be between 1 and 4094/));
    assert.equal(parseHostConfig(LAB.replace("vlan: 100", "vlan: 100\n    forwarding: unmanaged")).networks[0]!.forwarding, "unmanaged");
    assert.throws(() => parseHostConfig(LAB.replace("vlan: 100", "forwarding: learn"), { source: src }), configError(12, /networks\.physnet1\.forwarding: must be one of managed, unmanaged/));
    assert.throws(() => parseHostConfig(LAB.replace("network: physnet2", "network: physnet9")), configError(21, /uplinks\[1\]\.network: unknown network "physnet9"/));
    assert.throws(() => parseHostConfig(LAB.replace("  port: 7611", "  prot: 7611")), configError(5, /listen\.prot: unknown field/));
    assert.throws(() => parseHostConfig(LAB.replace("0000:5e:10.2]", "0000:5e:10.9]")), configError(23, /uplinks\[1\]\.standIns\.vfs\[1\]: not a PCI address/));
    assert.throws(() => parseHostConfig(LAB.replace("pf: enp94s0f0", "pf: 0000:3b:00.0")), configError(20, /uplinks\[1\]\.pf: 0000:3b:00.0 is already the uplink of uplinks\[0\]/));
    assert.throws(() => parseHostConfig(LAB.replace("name: host-a\n", "")), configError(2, /name: required/));
    assert.throws(() => parseHostConfig(LAB.replace("stateDir: /tmp/ferry-a/state", "stateDir: /tmp/../etc")), configError(6, /stateDir: must not contain '\.\.'/));
    assert.throws(() => parseHostConfig(LAB + "listen: {address: localhost}\n"), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /duplicate|unique/i.test(e.message));
    assert.throws(() => parseHostConfig("name: a\nlisten: {address: localhost}\n"), configError(2, /listen\.address: not an IP address/));
    assert.throws(() => parseHostConfig("name: a\nnetworks: [\n"), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /YAML/.test(e.message));
  });

  test("joined with the inventory: usable VFs with their network, MAC and stand-in model", async () => {
    const root = join(base, "sysfs");
    const fx = await writeSysfsFixture(root);
    const c = parseHostConfig(LAB, { baseDir: base });
    const inv = await readInventory({ root: c.sysfsRoot });
    const ups = resolveUplinks(c, inv);
    assert.deepEqual(ups.map((u) => [u.pf, u.pfIfname, u.network, u.bandwidthMbps, u.numaNode, u.vfs.length]), [
      ["0000:3b:00.0", "enp59s0f0", "physnet1", 10000, 0, 8],
      ["0000:5e:00.0", "enp94s0f0", "physnet2", 25000, 1, 8],
    ]);
    const vfs = usableVfs(c, inv);
    assert.equal(vfs.length, 16);
    assert.deepEqual(vfs[0], {
      bdf: "0000:3b:10.0",
      pf: "0000:3b:00.0",
      pfIfname: "enp59s0f0",
      vfIndex: 0,
      network: "physnet1",
      vendor: "8086",
      device: "10ed",
      numaNode: 0,
      mac: fx.pfs[0]!.vfs[0]!.mac,
      vlan: 100,
      standIn: { model: "vmxnet3" },
    });
    assert.deepEqual(
      vfs.filter((x) => x.network === "physnet2").map((x) => [x.bdf, x.vfIndex, x.standIn?.model ?? null]).slice(0, 3),
      [["0000:5e:10.0", 0, null], ["0000:5e:10.1", 1, "rtl8139"], ["0000:5e:10.2", 2, "rtl8139"]],
    );
  });

  test("a config naming a PF the inventory lacks, or a device that is no PF, is a clear error", async () => {
    const root = join(base, "sysfs-small");
    await writeSysfsFixture(root, {
      pfs: [{ vendor: "intel-82599", numVfs: 2 }],
      extraNics: [{ bdf: "0000:00:03.0", vendor: "1af4", device: "1041", ifname: "ens3" }],
    });
    const inv = await readInventory({ root });
    const missing = parseHostConfig("name: a\nnetworks: {n1: {}}\nuplinks: [{pf: 0000:5e:00.0, network: n1}]\n");
    assert.throws(() => usableVfs(missing, inv), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /uplinks\[0\]\.pf: 0000:5e:00.0 is not a network device on this host/.test(e.message));
    const plain = parseHostConfig("name: a\nnetworks: {n1: {}}\nuplinks: [{pf: ens3, network: n1}]\n");
    assert.throws(() => usableVfs(plain, inv), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /ens3 \(0000:00:03.0\) is not an SR-IOV physical function/.test(e.message));
    const notMine = parseHostConfig("name: a\nnetworks: {n1: {}}\nuplinks: [{pf: 0000:3b:00.0, network: n1, standIns: {vfs: [0000:3b:10.5]}}]\n");
    assert.throws(() => usableVfs(notMine, inv), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /standIns\.vfs\[0\]: 0000:3b:10.5 is not a VF of 0000:3b:00.0/.test(e.message));
  });
});
