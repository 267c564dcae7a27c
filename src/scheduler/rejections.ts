// Why a host was not chosen. Codes are stable (API): they appear in plans,
// HTTP bodies and CLI output. Listed in the order the filters run, cheapest
// first; a host carries the first filter that rejected it.

export const REJECT_CODES = {
  NOT_REQUESTED: "another host was requested",
  EXCLUDED: "excluded by the request",
  SAME_HOST: "the VM runs there now",
  HOST_DOWN: "host is down",
  HOST_DRAINING: "host is draining",
  NO_MEMORY: "not enough free memory",
  NO_VCPUS: "not enough free vCPUs",
  NO_VF: "no free VF for a NIC that must have one",
} as const;

export type RejectCode = keyof typeof REJECT_CODES;

/** Code numbers in the filter pass's per-host byte array (0 = not rejected). */
export const CODE_LIST = Object.keys(REJECT_CODES) as RejectCode[];
export const C_NOT_REQUESTED = 1;
export const C_EXCLUDED = 2;
export const C_SAME_HOST = 3;
export const C_HOST_DOWN = 4;
export const C_HOST_DRAINING = 5;
export const C_NO_MEMORY = 6;
export const C_NO_VCPUS = 7;
export const C_NO_VF = 8;

export interface Rejection {
  readonly host: string;
  readonly code: RejectCode;
  /** One line for a human: "need 8192 MiB, free 4096 MiB". */
  readonly message: string;
}

export type RejectionCounts = Readonly<Partial<Record<RejectCode, number>>>;

/**
 * The rejected hosts of one placement. Counts by code are computed in the
 * filter pass; the per-host list (one entry per rejected host, in host-name
 * order) and its messages are built on demand, from the same immutable
 * inputs, so a placement over 10,000 hosts does not format 10,000 strings
 * nobody reads. JSON-serializes to plain data.
 */
export class Rejections {
  private readonly source: LazySource | undefined;
  private materialized: readonly Rejection[] | undefined;
  private tally: { count: number; byCode: RejectionCounts } | undefined;

  private constructor(tally: { count: number; byCode: RejectionCounts } | undefined, source: LazySource | undefined, list: readonly Rejection[] | undefined) {
    this.tally = tally;
    this.source = source;
    this.materialized = list;
  }

  /** How many hosts were rejected. */
  get count(): number {
    return this.counted().count;
  }

  /** Rejected hosts per code. */
  get byCode(): RejectionCounts {
    return this.counted().byCode;
  }

  private counted(): { count: number; byCode: RejectionCounts } {
    if (this.tally === undefined) {
      const n = this.source!.filtered.counts;
      const byCode: Partial<Record<RejectCode, number>> = {};
      let count = 0;
      for (let c = 1; c <= CODE_LIST.length; c++) {
        if (n[c]! > 0) {
          byCode[CODE_LIST[c - 1]!] = n[c]!;
          count += n[c]!;
        }
      }
      this.tally = { count, byCode };
    }
    return this.tally;
  }

  /**
   * From the filter pass: one code byte per host (0 = not rejected) and the
   * count per code number, read when first needed (the fast path runs the
   * filter pass then); messages come from explain() on demand.
   */
  static lazy(
    names: readonly string[],
    hostIndex: ReadonlyMap<string, number>,
    filtered: FilterPass,
    explain: (host: number, code: number) => string,
  ): Rejections {
    return new Rejections(undefined, { names, hostIndex, filtered, explain }, undefined);
  }

  /** From a list already built (when the inputs will change afterwards, as in an evacuation plan). */
  static of(list: readonly Rejection[]): Rejections {
    const counts: Partial<Record<RejectCode, number>> = {};
    for (const x of list) counts[x.code] = (counts[x.code] ?? 0) + 1;
    return new Rejections({ count: list.length, byCode: counts }, undefined, list);
  }

  /** Every rejected host with its reason, in host-name order. */
  list(): readonly Rejection[] {
    if (this.materialized === undefined) {
      const out: Rejection[] = [];
      const src = this.source;
      if (src) {
        const codes = src.filtered.codes;
        for (let h = 0; h < codes.length; h++) {
          const c = codes[h]!;
          if (c !== 0) out.push({ host: src.names[h]!, code: CODE_LIST[c - 1]!, message: src.explain(h, c) });
        }
      }
      this.materialized = out;
    }
    return this.materialized;
  }

  /** The rejection of one host, or undefined if it was not rejected. */
  get(host: string): Rejection | undefined {
    const src = this.source;
    if (src === undefined) return this.list().find((r) => r.host === host);
    const h = src.hostIndex.get(host);
    const c = h === undefined ? 0 : src.filtered.codes[h]!;
    return h === undefined || c === 0 ? undefined : { host, code: CODE_LIST[c - 1]!, message: src.explain(h, c) };
  }

  /** "9,812 NO_VF, 120 HOST_DOWN, 68 NO_MEMORY", most frequent first. */
  summary(): string {
    const entries = Object.entries(this.byCode).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return entries.map(([code, n]) => `${n} ${code}`).join(", ");
  }

  toJSON(): { count: number; byCode: RejectionCounts; hosts: readonly Rejection[] } {
    return { count: this.count, byCode: this.byCode, hosts: this.list() };
  }
}

/** The filter pass's output; its getters may run the pass on first read. */
export interface FilterPass {
  /** One code number per host, 0 = not rejected. */
  readonly codes: Uint8Array;
  /** Rejected hosts per code number (index = code). */
  readonly counts: readonly number[];
}

interface LazySource {
  readonly names: readonly string[];
  readonly hostIndex: ReadonlyMap<string, number>;
  readonly filtered: FilterPass;
  readonly explain: (host: number, code: number) => string;
}
