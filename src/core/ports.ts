// Free TCP ports (on 127.0.0.1 unless told), asked of the kernel: free when
// asked, so a caller that binds later may still lose the port to another.
import { createServer } from "node:net";

/** `n` distinct free TCP ports at `host` (all held open until each is known, so none repeats). */
export async function freePorts(n: number, host = "127.0.0.1"): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        const s = createServer();
        s.once("error", reject);
        s.listen(0, host, () => resolve(s));
      }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    if (a === null || typeof a === "string") throw new Error("no port");
    return a.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/** One free TCP port at `host` (default loopback). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return (await freePorts(1, host))[0]!;
}
