/**
 * The spawner: a small, long-lived Node process that starts sandbox launchers for the server and
 * relays what happens to them (see spawner.ts for why it exists). Started by `Spawner` with
 * `child_process.fork`; talks only over the IPC channel it was given, and exits when that channel
 * closes — the launchers' bwrap runs with `--die-with-parent`, so every sandbox goes with it.
 *
 * It imports nothing heavy on purpose: its whole point is to stay small, since the kernel copies the
 * memory map of whoever forks, once per sandbox.
 */
import { type ChildProcess, type StdioOptions, spawn } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { findInheritedFds } from './inherited-fds.js';
import { BoundedCapture } from './output-capture.js';
import { ARGS_FD, BwrapStatusReader, type ControlMessage, type FromSpawner, STATUS_FD, type SpawnMessage, type ToSpawner } from './spawner-protocol.js';


interface Launched {
  child: ChildProcess;
  initPid: number | null;
  exited: boolean;
}

const launched = new Map<number, Launched>();
const devNullFd = openSync('/dev/null', 'r+');
// Anything this process inherited without close-on-exec (the IPC channel included, should Node ever
// leave it so) is overlaid with /dev/null in every launcher, so no descriptor of ours reaches a sandbox.
const maskFds = await findInheritedFds();

function send(message: FromSpawner): void {
  // A closed channel means the server is gone; 'disconnect' below ends this process.
  if (process.connected) process.send?.(message);
}

function stdio(stdinFd: number | null): StdioOptions {
  const result: Array<'ignore' | 'pipe' | number> = [stdinFd ?? 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'];
  for (const fd of maskFds) {
    if (fd <= STATUS_FD) continue; // Replaced by the launcher's own stdio anyway.
    while (result.length < fd) result.push('ignore');
    result[fd] = devNullFd;
  }
  return result;
}

function start(msg: SpawnMessage): void {
  let stdinFd: number | null = null;
  let files: [number, number] | undefined;
  let child: ChildProcess;
  try {
    if (msg.outputFiles) files = [openOutputFile(msg.outputFiles.stdout), openOutputFile(msg.outputFiles.stderr)];
    if (msg.stdinPath !== null) stdinFd = openSync(msg.stdinPath, 'r');
    child = spawn(msg.file, msg.args, { stdio: stdio(stdinFd), env: msg.env });
  } catch (err) {
    for (const fd of files ?? []) closeSync(fd);
    send({ ev: 'spawn-failed', id: msg.id, message: String(err) });
    return;
  } finally {
    // The launcher has its own copy by now (or never will).
    if (stdinFd !== null) closeSync(stdinFd);
  }
  if (child.pid === undefined) {
    // spawn() reports exec failures (a missing shell, EAGAIN) by an 'error' event, never a pid.
    child.once('error', (err) => send({ ev: 'spawn-failed', id: msg.id, message: String(err) }));
    for (const fd of files ?? []) closeSync(fd);
    return;
  }
  const entry: Launched = { child, initPid: null, exited: false };
  launched.set(msg.id, entry);
  send({ ev: 'spawned', id: msg.id, pid: child.pid });

  const stdout = new BoundedCapture(msg.outputBytes, files?.[0]);
  const stderr = new BoundedCapture(msg.outputBytes, files?.[1]);
  stdout.attach(child.stdout as Readable);
  stderr.attach(child.stderr as Readable);
  const args = child.stdio[ARGS_FD] as Writable & Readable;
  args.on('error', () => undefined); // bwrap gone before reading its options: its exit tells why.
  args.resume();
  args.end(msg.argsData);
  const reader = new BwrapStatusReader();
  const status = child.stdio[STATUS_FD] as Readable;
  status.setEncoding('utf8');
  status.on('data', (text: string) => {
    for (const doc of reader.push(text)) {
      if (doc.initPid !== undefined) entry.initPid = doc.initPid;
      send({ ev: 'status', id: msg.id, status: doc });
    }
  });
  child.once('exit', (code, signal) => {
    entry.exited = true;
    send({ ev: 'exit', id: msg.id, code, signal });
  });
  child.once('close', () => {
    launched.delete(msg.id);
    for (const fd of files ?? []) closeSync(fd);
    send({
      ev: 'close',
      id: msg.id,
      stdout: { bytes: stdout.bytes(), totalBytes: stdout.totalBytes },
      stderr: { bytes: stderr.bytes(), totalBytes: stderr.totalBytes },
    });
  });
}

/** A long job's log file, made afresh (as spawner.c makes it). */
function openOutputFile(path: string): number {
  return openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
}

function signalQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

/**
 * The namespace's init dying makes the kernel SIGKILL everything in it. The monitor is reaped only here,
 * so until then its pid is its own; init is reaped by the monitor before the monitor exits, and its pid
 * may be reused in between, so it is signalled only while its parent is still the monitor (Node has no
 * pidfd to close that window entirely; the native spawner has).
 */
function kill(entry: Launched): void {
  if (entry.exited) return;
  if (entry.initPid !== null && parentOf(entry.initPid) === entry.child.pid) signalQuietly(entry.initPid);
  if (entry.child.pid !== undefined) signalQuietly(entry.child.pid);
}

function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid …": comm may hold anything and ends at the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function control(msg: ControlMessage): void {
  const entry = launched.get(msg.id);
  if (!entry) return;
  if (msg.op === 'kill') kill(entry);
  else for (const stream of entry.child.stdio) stream?.destroy();
}

process.on('message', (msg: ToSpawner) => {
  if (msg.op === 'spawn') start(msg);
  else control(msg);
});
process.on('disconnect', () => {
  // The server is gone: take every sandbox down now rather than waiting for --die-with-parent.
  for (const entry of launched.values()) kill(entry);
  process.exit(0);
});
send({ ev: 'ready' });
