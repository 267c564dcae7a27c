// Which controller leads. With SQLite there is one controller and it always
// leads (term 1). With etcd, every controller campaigns (store/etcd-election.ts):
// the elected one runs the control loops and the migrations, and calls the
// agents with its term; the others answer reads from the store and forward
// writes to the leader (api/forward.ts).
import type { EtcdElection } from "../store/etcd-election.ts";
import type { ControllersViewT } from "../wire/controllers.ts";

export interface Leadership {
  readonly store: "sqlite" | "etcd";
  /** This controller's id. */
  readonly self: string;
  /** The term this controller leads now; null while it does not. */
  term(): number | null;
  /** The leader's URL when another controller leads (null: this one leads, or none does). */
  leaderUrl(): Promise<string | null>;
  view(): Promise<ControllersViewT>;
}

/** SQLite: the only controller, always the leader of term 1. */
export class SingleLeadership implements Leadership {
  readonly store = "sqlite";
  readonly self: string;
  readonly #url: string;
  readonly #startedAt: number;

  constructor(o: { id: string; url: string; startedAt: number }) {
    this.self = o.id;
    this.#url = o.url;
    this.#startedAt = o.startedAt;
  }

  term(): number {
    return 1;
  }

  leaderUrl(): Promise<null> {
    return Promise.resolve(null);
  }

  view(): Promise<ControllersViewT> {
    return Promise.resolve({
      store: "sqlite", self: this.self,
      members: [{ id: this.self, url: this.#url, startedAt: this.#startedAt, leader: true }],
      leader: { id: this.self, url: this.#url, term: 1, since: this.#startedAt },
    });
  }
}

/** etcd: one of several, elected. */
export class EtcdLeadership implements Leadership {
  readonly store = "etcd";
  readonly self: string;
  readonly #e: EtcdElection;

  constructor(election: EtcdElection) {
    this.#e = election;
    this.self = election.me.id;
  }

  term(): number | null {
    const t = this.#e.term;
    return t === null ? null : Number(t);
  }

  async leaderUrl(): Promise<string | null> {
    if (this.#e.term !== null) return null;
    const l = await this.#e.leader();
    return l === undefined || l.id === this.self ? null : l.url;
  }

  async view(): Promise<ControllersViewT> {
    const [members, leader] = await Promise.all([this.#e.members(), this.#e.leader()]);
    return {
      store: "etcd", self: this.self,
      members: members.map((m) => ({ ...m, leader: m.id === leader?.id })),
      leader: leader ? { id: leader.id, url: leader.url, term: Number(leader.term), since: leader.since } : null,
    };
  }
}
