// One service at several URLs (the controllers of an etcd cluster, any of
// which takes a request: a follower forwards writes to the leader): a fetch
// that sends a request for one of those base URLs to the one that answered
// last, and when that one cannot be connected to, to the next, in the order
// given. Only a failure to connect moves on — nothing reached the server, so
// a write is never sent twice; a timeout, a reset or an HTTP error comes back
// as it is.
const CONNECT_FAILED = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "ENOTFOUND", "EAI_AGAIN", "UND_ERR_CONNECT_TIMEOUT"]);

/** True when `e` (or its causes) says the connection was never made. */
export function connectFailed(e: unknown): boolean {
  let x: unknown = e;
  for (let depth = 0; x instanceof Error && depth < 5; depth++) {
    const code = (x as NodeJS.ErrnoException).code;
    if (typeof code === "string" && CONNECT_FAILED.has(code)) return true;
    if (x instanceof AggregateError && x.errors.some(connectFailed)) return true;
    x = x.cause;
  }
  return false;
}

const trim = (u: string): string => u.replace(/\/+$/, "");

/** `inner`, with requests for any of `bases` tried at each of them in turn (from the last that answered) while the connection fails. */
export function failoverFetch(bases: readonly string[], inner: typeof fetch): typeof fetch {
  const list = [...new Set(bases.map(trim))];
  if (list.length < 2) return inner;
  let first = 0;
  const f = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (input instanceof Request) return inner(input, init);
    const url = typeof input === "string" ? input : input.href;
    const base = list.find((b) => url === b || url.startsWith(`${b}/`) || url.startsWith(`${b}?`));
    if (base === undefined) return inner(input, init);
    const rest = url.slice(base.length);
    let last: unknown;
    for (let k = 0; k < list.length; k++) {
      const i = (first + k) % list.length;
      try {
        const res = await inner(`${list[i]}${rest}`, init);
        first = i;
        return res;
      } catch (e) {
        if (!connectFailed(e) || init?.signal?.aborted === true) throw e;
        last = e;
      }
    }
    throw last;
  };
  return f;
}
