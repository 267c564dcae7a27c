// The `ferry` command's exit codes, in one place (scripts depend on them),
// and the one mapping from an error's code to an exit code: every command
// that lets an error through exits with exitForError(e).
import type { ErrorCode } from "../core/errors.ts";
import { FerryError } from "../core/errors.ts";

export const EXIT = {
  /** Did what was asked. */
  ok: 0,
  /** Failed (an error is printed). */
  failed: 1,
  /** Bad command line: unknown command or flag, missing argument. */
  usage: 2,
  /** Refused before changing anything (e.g. no VF on the destination, the VM busy, a field the controller rejects). */
  refused: 3,
  /** Started, failed, and was rolled back: the VM runs where it was. */
  rolledBack: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The codes in a line, for help texts. */
export const EXIT_HELP = "Exit codes: 0 ok, 1 failed, 2 usage, 3 refused (nothing changed), 4 rolled back (the VM runs where it was).";

/**
 * Each error code's exit code. Refused (3): the controller or an agent said
 * no and changed nothing — the request is invalid, not allowed, names
 * nothing that exists, or does not fit the current state (busy, not
 * running), or no host or VF can take it. Rolled back (4): an operation
 * started and was undone, the VM runs where it was (a guest that did not
 * release its VF in time, a failed destination check, an operator's
 * cancel). Failed (1): anything else — unreachable, timed out, a process or
 * command that failed, a local config that cannot be read.
 */
export const EXIT_FOR_CODE = {
  FERRY_ERR_INVALID: EXIT.refused,
  FERRY_ERR_UNAUTHORIZED: EXIT.refused,
  FERRY_ERR_NOT_FOUND: EXIT.refused,
  FERRY_ERR_CONFLICT: EXIT.refused,
  FERRY_ERR_TOO_LARGE: EXIT.refused,
  FERRY_ERR_MEDIA_TYPE: EXIT.refused,
  FERRY_ERR_STATE: EXIT.refused,
  FERRY_ERR_VM_RUNNING: EXIT.refused,
  FERRY_ERR_NO_VF: EXIT.refused,
  FERRY_ERR_NO_HOST: EXIT.refused,
  FERRY_ERR_LEASE_HELD: EXIT.refused,
  FERRY_ERR_MIGRATION_TLS: EXIT.refused,
  FERRY_ERR_STALE_TERM: EXIT.refused,
  FERRY_ERR_UNPLUG_TIMEOUT: EXIT.rolledBack,
  FERRY_ERR_PRECHECK: EXIT.rolledBack,
  FERRY_ERR_SOURCE_GAVE_UP: EXIT.rolledBack,
  FERRY_ERR_CANCELLED: EXIT.rolledBack,
  FERRY_ERR_TIMEOUT: EXIT.failed,
  FERRY_ERR_ABORTED: EXIT.failed,
  FERRY_ERR_QMP: EXIT.failed,
  FERRY_ERR_QMP_CLOSED: EXIT.failed,
  FERRY_ERR_QMP_PROTOCOL: EXIT.failed,
  FERRY_ERR_QEMU_START: EXIT.failed,
  FERRY_ERR_MIGRATION: EXIT.failed,
  FERRY_ERR_COMMAND: EXIT.failed,
  FERRY_ERR_SYSFS: EXIT.failed,
  FERRY_ERR_CONFIG: EXIT.failed,
  FERRY_ERR_FEATURE: EXIT.failed,
  FERRY_ERR_GUEST_IMAGE: EXIT.failed,
  FERRY_ERR_AGENT: EXIT.failed,
  FERRY_ERR_CONTROLLER: EXIT.failed,
  FERRY_ERR_REPLUG: EXIT.failed,
  FERRY_ERR_GUEST_LOST: EXIT.failed,
  FERRY_ERR_NOT_LEADER: EXIT.failed,
  FERRY_ERR_INTERNAL: EXIT.failed,
} as const satisfies Record<ErrorCode, ExitCode>;

/** The exit code for an error a command lets through (not a usage error: those are 2, see main.ts). */
export function exitForError(e: unknown): ExitCode {
  return e instanceof FerryError ? EXIT_FOR_CODE[e.code] : EXIT.failed;
}
