// Where the controller's events are written down, as a port below both the
// controller (whose EventBus numbers and publishes them, src/controller/events.ts; their types: src/wire/events.ts)
// and the store (whose SqliteEventLog keeps them, src/store/events.ts). The log
// keeps numbered, stamped JSON events; what an event means is the controller's.

/** What the log needs of an event: its sequence number and when it happened (epoch ms). */
export interface LoggedEvent {
  seq: number;
  at: number;
}

/** Where events are written down (SqliteEventLog). */
export interface EventLog<E extends LoggedEvent> {
  lastSeq(): number;
  append(e: E): void;
  /** The newest `limit` events with seq > after, oldest first. */
  since(after: number, limit: number): E[];
}
