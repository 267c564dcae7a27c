// Worker for leases.test.ts: its own DatabaseSync on the shared state file,
// racing the other worker for one VF per round (a barrier starts each round).
import { parentPort, workerData } from "node:worker_threads";
import { systemClock } from "../../core/clock.ts";
import { isFerryError } from "../../core/errors.ts";
import { LeaseStore, openStateDb } from "../leases.ts";

interface Data {
  file: string;
  vfs: string[];
  instanceId: string;
  vmUuid: string;
  barrier: SharedArrayBuffer;
  parties: number;
}

const data = workerData as Data;
const db = openStateDb(data.file);
const store = new LeaseStore(db, systemClock);
const barrier = new Int32Array(data.barrier);
const wins: boolean[] = [];
const errors: string[] = [];
for (const [i, vf] of data.vfs.entries()) {
  Atomics.add(barrier, i, 1);
  Atomics.notify(barrier, i);
  for (let seen = Atomics.load(barrier, i); seen < data.parties; seen = Atomics.load(barrier, i)) Atomics.wait(barrier, i, seen, 1000);
  try {
    store.lease(vf, { kind: "instance", vmUuid: data.vmUuid, instanceId: data.instanceId });
    wins.push(true);
  } catch (e) {
    if (!isFerryError(e, "FERRY_ERR_LEASE_HELD")) errors.push(String(e));
    wins.push(false);
  }
}
db.close();
parentPort?.postMessage({ wins, errors });
