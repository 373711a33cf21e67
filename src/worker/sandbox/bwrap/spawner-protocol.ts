/**
 * The messages between the sandbox code in the server and its spawner process (see spawner.ts), over
 * Node's IPC channel with the 'advanced' serialization (so output travels as bytes, not JSON arrays).
 * Every run has an id chosen by the server; messages about one run arrive in the order they were sent.
 *
 * Also bwrap's `--json-status-fd` reader, used by the spawner, which must know the namespace's init to
 * kill it.
 */

/** Descriptor numbers in the launcher: bwrap reads its options from one and reports status on the other. */
export const ARGS_FD = 3;
export const STATUS_FD = 4;

/** Server → spawner: start a launcher (`file args…`) with the given environment. */
export interface SpawnMessage {
  op: 'spawn';
  id: number;
  file: string;
  args: string[];
  env: Record<string, string>;
  /** Opened read-only by the spawner as the launcher's stdin; null: /dev/null. */
  stdinPath: string | null;
  /** Written to the launcher's descriptor 3, then closed (bwrap's `--args`). */
  argsData: string;
  /** Bytes of stdout and of stderr kept; the rest is counted. */
  outputBytes: number;
  /**
   * Files (made afresh, O_EXCL) the kept bytes of stdout and stderr are written to as they come, instead of
   * being held and sent with 'close' (whose bytes are then empty): a long job's live log.
   */
  outputFiles: { stdout: string; stderr: string } | null;
}

/**
 * Server → spawner. `kill`: SIGKILL the namespace's init and the bwrap monitor, unless the monitor has
 * exited already (then neither pid is ours any more). `close-pipes`: stop reading output, last resort
 * against a process that escaped the kill and keeps the pipes open.
 */
export type ControlMessage = { op: 'kill'; id: number } | { op: 'close-pipes'; id: number };

export type ToSpawner = SpawnMessage | ControlMessage;

export interface CapturedStream {
  bytes: Uint8Array;
  totalBytes: number;
}

/** Spawner → server. */
export type FromSpawner =
  | { ev: 'ready' }
  | { ev: 'spawned'; id: number; pid: number }
  | { ev: 'spawn-failed'; id: number; message: string }
  | { ev: 'status'; id: number; status: BwrapStatus }
  | { ev: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null }
  | { ev: 'close'; id: number; stdout: CapturedStream; stderr: CapturedStream };

/**
 * One document of bwrap's status stream: `child-pid` when the sandbox exists, `exit-code` at the end; or
 * of remex-exec's waiter, which shares the stream: how the program itself ended, before bwrap's exit-code.
 */
export interface BwrapStatus {
  initPid?: number;
  pidNamespace?: number;
  /** bwrap's: the program's exit status, or 128 + n for signal n (the two cannot be told apart). */
  exitCode?: number;
  /** The waiter's: exactly one of an exit status or a signal number. */
  programEnd?: { exitCode: number; signo: null } | { exitCode: null; signo: number };
}

function isStatusNumber(value: unknown, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;
}

/** Splits bwrap's status stream into lines, each one JSON document. */
export class BwrapStatusReader {
  private pending = '';

  /** The documents completed by `text`; malformed lines are skipped. */
  push(text: string): BwrapStatus[] {
    this.pending += text;
    const docs: BwrapStatus[] = [];
    for (let nl = this.pending.indexOf('\n'); nl >= 0; nl = this.pending.indexOf('\n')) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const status: BwrapStatus = {};
      if (typeof doc['child-pid'] === 'number') {
        status.initPid = doc['child-pid'];
        if (typeof doc['pid-namespace'] === 'number') status.pidNamespace = doc['pid-namespace'];
      }
      if (typeof doc['exit-code'] === 'number') status.exitCode = doc['exit-code'];
      // remex-exec's waiter inside the sandbox, on a copy of this pipe (bwrap-args.ts): the program's own end.
      if (isStatusNumber(doc['remex-exit-code'], 255)) status.programEnd = { exitCode: doc['remex-exit-code'], signo: null };
      else if (isStatusNumber(doc['remex-signal'], 64) && doc['remex-signal'] > 0) status.programEnd = { exitCode: null, signo: doc['remex-signal'] };
      if (Object.keys(status).length > 0) docs.push(status);
    }
    return docs;
  }
}
