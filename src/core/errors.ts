// Ferry's error type. Codes are API: they appear in HTTP problem bodies, CLI
// messages and logs, so they are listed once here with their HTTP status.

export const ERROR_CODES = {
  FERRY_ERR_INVALID: { status: 400, retryable: false, title: "invalid input" },
  FERRY_ERR_UNAUTHORIZED: { status: 401, retryable: false, title: "unauthorized" },
  FERRY_ERR_NOT_FOUND: { status: 404, retryable: false, title: "not found" },
  FERRY_ERR_CONFLICT: { status: 409, retryable: false, title: "conflict" },
  FERRY_ERR_TOO_LARGE: { status: 413, retryable: false, title: "request body too large" },
  FERRY_ERR_MEDIA_TYPE: { status: 415, retryable: false, title: "request body not JSON" },
  FERRY_ERR_STATE: { status: 409, retryable: false, title: "not valid in this state" },
  FERRY_ERR_VM_RUNNING: { status: 409, retryable: false, title: "the VM already runs" },
  FERRY_ERR_NO_VF: { status: 409, retryable: false, title: "no free VF" },
  FERRY_ERR_NO_HOST: { status: 409, retryable: false, title: "no host can take the VM" },
  FERRY_ERR_LEASE_HELD: { status: 409, retryable: false, title: "VF already leased" },
  FERRY_ERR_TIMEOUT: { status: 504, retryable: true, title: "deadline exceeded" },
  FERRY_ERR_ABORTED: { status: 499, retryable: true, title: "aborted" },
  FERRY_ERR_UNPLUG_TIMEOUT: { status: 504, retryable: false, title: "guest did not release the device in time" },
  FERRY_ERR_QMP: { status: 502, retryable: false, title: "QEMU refused a command" },
  FERRY_ERR_QMP_CLOSED: { status: 502, retryable: true, title: "QMP connection closed" },
  FERRY_ERR_QMP_PROTOCOL: { status: 502, retryable: false, title: "QMP protocol error" },
  FERRY_ERR_QEMU_START: { status: 500, retryable: false, title: "QEMU failed to start" },
  FERRY_ERR_MIGRATION: { status: 500, retryable: false, title: "migration failed" },
  FERRY_ERR_MIGRATION_TLS: { status: 409, retryable: false, title: "the migration stream's TLS refused a peer" },
  FERRY_ERR_COMMAND: { status: 500, retryable: false, title: "host command failed" },
  FERRY_ERR_SYSFS: { status: 500, retryable: false, title: "unreadable sysfs entry" },
  FERRY_ERR_CONFIG: { status: 400, retryable: false, title: "invalid configuration" },
  FERRY_ERR_FEATURE: { status: 500, retryable: false, title: "device feature failed" },
  FERRY_ERR_GUEST_IMAGE: { status: 500, retryable: false, title: "guest image unavailable" },
  FERRY_ERR_AGENT: { status: 502, retryable: true, title: "agent unreachable or failed" },
  FERRY_ERR_CONTROLLER: { status: 502, retryable: true, title: "controller unreachable or failed" },
  FERRY_ERR_CANCELLED: { status: 409, retryable: false, title: "cancelled by operator" },
  FERRY_ERR_PRECHECK: { status: 409, retryable: false, title: "destination check failed at pre-switchover" },
  FERRY_ERR_SOURCE_GAVE_UP: { status: 409, retryable: false, title: "the source gave up waiting for the switch-over decision and resumed the guest" },
  FERRY_ERR_REPLUG: { status: 500, retryable: false, title: "a NIC did not come back after switch-over" },
  FERRY_ERR_GUEST_LOST: { status: 500, retryable: false, title: "the QEMU process running the guest exited" },
  FERRY_ERR_NOT_LEADER: { status: 503, retryable: true, title: "this controller does not lead, or no controller leads right now" },
  FERRY_ERR_STALE_TERM: { status: 409, retryable: false, title: "a controller of an older leadership term was refused" },
  FERRY_ERR_INTERNAL: { status: 500, retryable: false, title: "internal error" },
} as const satisfies Record<string, { status: number; retryable: boolean; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface FerryErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  /** Structured facts for the operator (field names, values, ids). Never secrets. */
  details?: Record<string, unknown>;
}

export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: FerryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "FerryError";
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.details = options.details ?? {};
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  toJSON(): { code: ErrorCode; message: string; retryable: boolean; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, retryable: this.retryable, details: this.details };
  }
}

export function isFerryError(e: unknown, code?: ErrorCode): e is FerryError {
  return e instanceof FerryError && (code === undefined || e.code === code);
}

/** Wrap anything thrown into a FerryError, keeping FerryErrors as they are. */
export function toFerryError(e: unknown, code: ErrorCode = "FERRY_ERR_INTERNAL"): FerryError {
  if (e instanceof FerryError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new FerryError(code, message, { cause: e });
}

/** An input failed validation: the message names the field and the value. */
export function invalid(field: string, value: unknown, why: string): FerryError {
  return new FerryError("FERRY_ERR_INVALID", `${field}: ${why} (got ${JSON.stringify(value)})`, {
    details: { field, value },
  });
}
