// Accelerator choice at run time: KVM only where it can boot a stock kernel.
// Nested "PVM" (kvm_pvm) exposes /dev/kvm but cannot (FINDINGS.md): TCG there.
import { access, constants, readFile } from "node:fs/promises";

export type Accel = "kvm" | "tcg";

export interface AccelChoice {
  accel: Accel;
  reason: string;
}

export async function detectAccel(env: NodeJS.ProcessEnv = process.env, sysRoot = "/sys", procRoot = "/proc", devKvm = "/dev/kvm"): Promise<AccelChoice> {
  const forced = env["FERRY_ACCEL"];
  if (forced === "kvm" || forced === "tcg") return { accel: forced, reason: `FERRY_ACCEL=${forced}` };
  try {
    await access(devKvm, constants.R_OK | constants.W_OK);
  } catch {
    return { accel: "tcg", reason: `${devKvm} not usable` };
  }
  try {
    await access(`${sysRoot}/module/kvm_pvm`);
    return { accel: "tcg", reason: "KVM is nested PVM (kvm_pvm), which cannot boot a stock kernel" };
  } catch {
    // not PVM
  }
  const cpuinfo = await readFile(`${procRoot}/cpuinfo`, "utf8").catch(() => "");
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) {
    return { accel: "tcg", reason: "the CPU shows no vmx/svm flag" };
  }
  return { accel: "kvm", reason: "/dev/kvm with hardware virtualization" };
}
