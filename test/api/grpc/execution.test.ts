/**
 * REAPI Execution and ActionCache through a real gRPC client against a real server whose bubblewrap
 * workers run the actions (natively, and under qemu-user for an arm-a64 action).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { ActionResult, DirectoryOut, TreeOut } from '../../../src/api/grpc/messages.js';
import { encodeDirectory } from '../../../src/cas/directory-codec.js';
import type { Digest } from '../../../src/core/digest.js';
import { digestOf } from '../../../src/core/digest.js';
import { compileC, requireTools, which } from '../../helpers/tools.js';
import type { GrpcHarness } from './harness.js';
import {
  call,
  collect,
  decode,
  execute,
  expectCode,
  loseBlob,
  makeAction,
  missingSubjects,
  msg,
  readBlob,
  responseOf,
  stageOf,
  startGrpcHarness,
  subject,
  upload,
  uploadTree,
  V2,
} from './harness.js';

/** One program for every test, chosen by argv[1]; see each mode. */
const TOOL_C = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/utsname.h>

static void put(const char *path, const char *text, int mode) {
  FILE *f = fopen(path, "w");
  if (!f) { perror(path); exit(90); }
  fputs(text, f);
  fclose(f);
  chmod(path, mode);
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  const char *tag = argc > 2 ? argv[2] : "";
  char text[512];
  if (!strcmp(mode, "print")) {           /* print <text>: stdout, stderr, exit $EXIT_CODE */
    printf("%s\\n", tag);
    fprintf(stderr, "err %s\\n", tag);
    return getenv("EXIT_CODE") ? atoi(getenv("EXIT_CODE")) : 0;
  }
  if (!strcmp(mode, "files")) {           /* files <tag>: an output directory and a file in a directory the worker made */
    mkdir("out", 0755);
    mkdir("out/sub", 0755);
    mkdir("out/empty", 0755);
    snprintf(text, sizeof text, "A %s\\n", tag); put("out/a.txt", text, 0644);
    snprintf(text, sizeof text, "B %s\\n", tag); put("out/sub/b.txt", text, 0755);
    symlink("sub/b.txt", "out/link");
    symlink("/etc/passwd", "out/abs");
    symlink("../../outside", "out/escape");
    snprintf(text, sizeof text, "single %s\\n", tag); put("gen/single.txt", text, 0644);
    printf("made %s\\n", tag);
    return 0;
  }
  if (!strcmp(mode, "sleep")) {           /* sleep <ms>: says so at once, then sleeps */
    write(1, "started\\n", 8);
    long ms = atol(tag);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    puts("slept");
    return 0;
  }
  if (!strcmp(mode, "arch")) {            /* arch: the machine the kernel (or qemu) reports */
    struct utsname u;
    uname(&u);
    printf("%s\\n", u.machine);
    return 0;
  }
  if (!strcmp(mode, "cat")) {             /* cat <file>: copies a file to stdout and writes here.txt */
    FILE *f = fopen(tag, "r");
    if (!f) { perror(tag); return 3; }
    int c;
    while ((c = fgetc(f)) != EOF) putchar(c);
    put("here.txt", "here\\n", 0644);
    return 0;
  }
  if (!strcmp(mode, "scribble")) {        /* scribble <file>: tries to change an input, then prints it */
    FILE *w = fopen(tag, "a");
    puts(w && fputs("scribbled\\n", w) >= 0 && fclose(w) == 0 ? "write allowed" : "write refused");
    puts(chmod(tag, 0666) == 0 ? "chmod allowed" : "chmod refused");
    FILE *f = fopen(tag, "r");
    if (!f) { perror(tag); return 3; }
    int c;
    while ((c = fgetc(f)) != EOF) putchar(c);
    return 0;
  }
  fprintf(stderr, "unknown mode %s\\n", mode);
  return 64;
}
`;

let h: GrpcHarness;
let tool: Buffer | undefined;
let toolRoot: Digest;

function needTools(t: TestContext): boolean {
  if (!requireTools(t, 'bwrap', 'gcc')) return false;
  assert.ok(tool, 'the test program did not compile');
  return true;
}

async function run(args: string[], extra: Partial<Parameters<typeof makeAction>[1]> = {}) {
  const { action } = await makeAction(h, { args: ['./tool', ...args], inputRoot: toolRoot, ...extra });
  return { action, ...(await execute(h, action)) };
}

function text(b: Buffer): string {
  return b.toString('utf8');
}

async function treeOf(result: ActionResult, path: string): Promise<TreeOut> {
  const dir = result.output_directories?.find((d) => d.path === path);
  assert.ok(dir?.tree_digest, `output directory ${path}`);
  return decode<TreeOut>(`${V2}.Tree`, await readBlob(h, dir.tree_digest));
}

describe('REAPI execution over gRPC', () => {
  before(async () => {
    h = await startGrpcHarness({}, { workerSlots: 3 });
    // Without gcc each test reports the missing tool (requireTools).
    if (which('gcc')) {
      tool = readFileSync(compileC({ code: TOOL_C, name: 'reapi-tool' }, 'x86_64'));
      toolRoot = await uploadTree(h, { tool: { data: tool, executable: true } });
    }
  });
  after(async () => {
    await h?.close();
  });

  test('Execute streams QUEUED/EXECUTING then a done COMPLETED operation with exit code, stdout and stderr', async (t) => {
    if (!needTools(t)) return;
    const { action } = await makeAction(h, { args: ['./tool', 'print', 'hello grpc'], inputRoot: toolRoot, env: { EXIT_CODE: '3' } });
    const { operations, response, result } = await execute(h, action, { inlineStdout: true });
    const stages = operations.map(stageOf);
    assert.equal(stages[stages.length - 1], 'COMPLETED');
    assert.ok(stages.slice(0, -1).every((s) => s === 'QUEUED' || s === 'EXECUTING'), stages.join());
    assert.ok(operations.slice(0, -1).every((op) => !op.done));
    const name = operations[0]?.name as string;
    assert.ok(operations.every((op) => op.name === name && op.error == null));
    assert.equal(response.status?.code, status.OK);
    assert.equal(response.cached_result, false);
    assert.equal(result.exit_code, 3);
    assert.equal(text(await readBlob(h, result.stdout_digest)), 'hello grpc\n');
    assert.equal(text(result.stdout_raw), 'hello grpc\n', 'inlined on request');
    assert.equal(result.stderr_raw.length, 0, 'not inlined unless asked');
    assert.equal(text(await readBlob(h, result.stderr_digest)), 'err hello grpc\n');
    assert.ok(result.execution_metadata?.worker);
    assert.ok(result.execution_metadata?.worker_start_timestamp);

    // One system, two front doors: the same execution over HTTP, with the same result fields.
    const view = await h.ts.client.getExecution(name);
    assert.equal(view.state, 'completed');
    assert.equal(view.code, 3);
    assert.equal(view.platform, 'x86_64-linux-cpu');
    assert.deepEqual(view.stdout, [{ text: 'hello grpc' }]);
    assert.deepEqual(view.stderr, [{ text: 'err hello grpc' }]);
    assert.equal(view.output?.stdout.digest.hash, result.stdout_digest?.hash);
    assert.equal(view.worker, result.execution_metadata?.worker);
  });

  test('outputs: files, directories as Trees (safe symlinks only), parents made by the worker', async (t) => {
    if (!needTools(t)) return;
    const { result } = await run(['files', 'outputs-test'], { outputPaths: ['gen/single.txt', 'missing.txt', 'out'] });
    assert.equal(result.exit_code, 0, text(await readBlob(h, result.stderr_digest)));
    assert.deepEqual(
      result.output_files?.map((f) => f.path),
      ['gen/single.txt'],
    );
    assert.equal(text(await readBlob(h, result.output_files?.[0]?.digest ?? null)), 'single outputs-test\n');
    const tree = await treeOf(result, 'out');
    const root = tree.root as DirectoryOut;
    assert.deepEqual(
      root.files.map((f) => [f.name, f.is_executable]),
      [['a.txt', false]],
    );
    assert.deepEqual(
      root.directories.map((d) => d.name),
      ['empty', 'sub'],
    );
    assert.deepEqual(
      root.symlinks.map((s) => [s.name, s.target]),
      [['link', 'sub/b.txt']],
      'absolute and escaping symlinks are left out',
    );
    assert.equal(text(await readBlob(h, root.files[0]?.digest ?? null)), 'A outputs-test\n');
    // Children: every Directory below the root, each once ('empty' and 'sub').
    assert.equal(tree.children.length, 2);
    const sub = tree.children.find((c) => c.files.some((f) => f.name === 'b.txt'));
    assert.equal(sub?.files[0]?.is_executable, true);
    assert.equal(text(await readBlob(h, sub?.files[0]?.digest ?? null)), 'B outputs-test\n');
  });

  test('a repeated Execute is a cache hit; skip_cache_lookup runs again; do_not_cache is never cached', async (t) => {
    if (!needTools(t)) return;
    const first = await run(['print', 'cache me']);
    assert.equal(first.response.cached_result, false);
    const again = await execute(h, first.action);
    assert.equal(again.response.cached_result, true);
    assert.equal(again.operations.length, 1, 'a cache hit is one done operation');
    assert.deepEqual(again.result.stdout_digest, first.result.stdout_digest);
    assert.equal((await h.ts.client.getExecution(again.operations[0]?.name as string)).cached, true);
    const skipped = await execute(h, first.action, { skipCacheLookup: true });
    assert.equal(skipped.response.cached_result, false);
    assert.notEqual(skipped.operations[0]?.name, first.operations[0]?.name);

    const volatile = await run(['print', 'do not cache'], { doNotCache: true });
    assert.equal(volatile.response.cached_result, false);
    assert.equal((await execute(h, volatile.action)).response.cached_result, false);
    await expectCode(call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(volatile.action) }), status.NOT_FOUND);
  });

  test('a program cannot change its inputs in the blob store (as root they are shared read-only)', async (t) => {
    if (!needTools(t)) return;
    const data = Buffer.from('input bytes\n');
    const root = await uploadTree(h, { tool: { data: tool as Buffer, executable: true }, 'data.txt': { data } });
    const { action } = await makeAction(h, { args: ['./tool', 'scribble', 'data.txt'], inputRoot: root });
    const { result } = await execute(h, action);
    const out = text(await readBlob(h, result.stdout_digest));
    if (process.getuid?.() === 0) {
      // The program runs as another uid: the staged file is not its own.
      assert.equal(out, 'write refused\nchmod refused\ninput bytes\n');
    } else {
      assert.match(out, /^write allowed\n/, 'unprivileged, the program owns its copy');
    }
    assert.deepEqual(await readBlob(h, msg(digestOf(data))), data, 'the stored blob is unchanged');
    // And the next action staging the same blob gets the original bytes.
    const again = await execute(h, (await makeAction(h, { args: ['./tool', 'cat', 'data.txt'], inputRoot: root })).action);
    assert.equal(text(await readBlob(h, again.result.stdout_digest)), 'input bytes\n');
  });

  test('GetActionResult serves results whose blobs all exist, and never one with a lost output', async (t) => {
    if (!needTools(t)) return;
    const { action, result } = await run(['files', 'lose-me'], { outputPaths: ['gen/single.txt', 'out'] });
    const cached = await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action), inline_stdout: true });
    assert.deepEqual(cached.output_files, result.output_files);
    assert.deepEqual(cached.output_directories, result.output_directories);
    assert.equal(text(cached.stdout_raw), 'made lose-me\n');
    await expectCode(call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(digestOf('no such action')) }), status.NOT_FOUND);

    // A file inside an output directory's Tree disappears: the entry is no longer served…
    const sub = (await treeOf(result, 'out')).children.find((c) => c.files.some((f) => f.name === 'b.txt'));
    const b = sub?.files[0]?.digest;
    assert.ok(b);
    loseBlob(h, { hash: b.hash, sizeBytes: b.size_bytes });
    await expectCode(call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action) }), status.NOT_FOUND);
    // …and Execute runs the action again instead of answering from the cache.
    const rerun = await execute(h, action);
    assert.equal(rerun.response.cached_result, false);
    assert.ok(await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action) }));

    // Same for a lost stdout blob (checked by the scheduler's lookup).
    const other = await run(['print', 'lose my stdout']);
    loseBlob(h, { hash: other.result.stdout_digest?.hash as string, sizeBytes: Number(other.result.stdout_digest?.size_bytes) });
    await expectCode(call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(other.action) }), status.NOT_FOUND);
  });

  test('UpdateActionResult stores a client result after checking its Action, Command and blobs', async (t) => {
    if (!needTools(t)) return;
    const [out, stdout] = (await upload(h, Buffer.from('built locally'), Buffer.from('local stdout'))) as [Digest, Digest];
    const root = await uploadTree(h, { 'src/in.c': { data: Buffer.from('int x;') } }, ['sub']);
    const { action } = await makeAction(h, { args: ['cc', 'in.c'], inputRoot: root, workingDirectory: 'sub', outputPaths: ['o/out.o'] });
    const uploaded: ActionResult = {
      output_files: [{ path: 'o/out.o', digest: msg(out), is_executable: false }],
      exit_code: 0,
      stdout_digest: msg(stdout),
      execution_metadata: { worker: 'laptop' },
    };
    await call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(action), action_result: uploaded });
    const got = await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action), inline_stdout: true });
    assert.deepEqual(
      got.output_files.map((f) => [f.path, f.digest?.hash]),
      [['o/out.o', out.hash]],
      'paths stay relative to the working directory',
    );
    assert.equal(text(got.stdout_raw), 'local stdout');
    assert.equal(got.execution_metadata?.worker, 'laptop');
    // Asked again (answered from the encoded copy kept for this result), in both shapes: the same answers.
    assert.deepEqual(await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action), inline_stdout: true }), got);
    const plain = await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action), inline_stdout: false });
    assert.equal(plain.stdout_raw.byteLength, 0, 'not inlined when not asked for');
    assert.deepEqual({ ...plain, stdout_raw: got.stdout_raw }, got);
    // A newer result for the action replaces the old one at once.
    await call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(action), action_result: { ...uploaded, exit_code: 3 } });
    assert.equal((await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action) })).exit_code, 3);

    // Every blob must be there; the violations name the missing ones.
    const gone = digestOf('never uploaded');
    const err = await expectCode(
      call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(action), action_result: { ...uploaded, output_files: [{ path: 'x', digest: msg(gone) }] } }),
      status.FAILED_PRECONDITION,
    );
    assert.deepEqual(missingSubjects(err), [subject(gone)]);
    const { action: notUploaded } = await makeAction(h, { args: ['never'], inputRoot: root }, ['action']);
    const err2 = await expectCode(call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(notUploaded), action_result: uploaded }), status.FAILED_PRECONDITION);
    assert.deepEqual(missingSubjects(err2), [subject(notUploaded)]);
    await expectCode(
      call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(action), action_result: { ...uploaded, output_symlinks: [{ path: 'l', target: 'x' }] } }),
      status.INVALID_ARGUMENT,
    );
    await expectCode(
      call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(action), action_result: { ...uploaded, output_files: [{ path: '../escape', digest: msg(out) }] } }),
      status.INVALID_ARGUMENT,
    );
    await expectCode(call(h.clients.ac, h.clients.ac.updateActionResult, { action_digest: msg(action) }), status.INVALID_ARGUMENT);
  });

  test('a timeout is DEADLINE_EXCEEDED in ExecuteResponse.status, with the output so far, and is not cached', async (t) => {
    if (!needTools(t)) return;
    const { action, response, result, operations } = await run(['sleep', '60000'], { timeoutMs: 1000 });
    assert.equal(response.status?.code, status.DEADLINE_EXCEEDED);
    assert.ok(operations.every((op) => op.error == null), 'never Operation.error');
    assert.equal(text(await readBlob(h, result.stdout_digest)), 'started\n');
    assert.equal((await h.ts.client.getExecution(operations[0]?.name as string)).state, 'timed_out');
    await expectCode(call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action) }), status.NOT_FOUND);
  });

  test('missing Action, Command or inputs: FAILED_PRECONDITION with every MISSING blob, before anything runs', async (t) => {
    if (!needTools(t)) return;
    const { action: noAction } = await makeAction(h, { args: ['./tool', 'print', 'x'], inputRoot: toolRoot, salt: 'no action' }, ['action']);
    let err = await expectCode(collect(h.clients.exec.execute({ action_digest: msg(noAction) })), status.FAILED_PRECONDITION);
    assert.deepEqual(missingSubjects(err), [subject(noAction)]);

    const absentRoot = digestOf('an input root nobody uploaded');
    const { action: noCommand, command } = await makeAction(h, { args: ['./tool', 'print', 'y'], inputRoot: absentRoot }, ['command']);
    err = await expectCode(collect(h.clients.exec.execute({ action_digest: msg(noCommand) })), status.FAILED_PRECONDITION);
    assert.deepEqual(missingSubjects(err).sort(), [subject(command), subject(absentRoot)].sort());

    // A tree whose Directories are there but whose files are not.
    const lost = [Buffer.from('lost input 1'), Buffer.from('lost input 2')];
    const sub = encodeDirectory({ files: [{ name: 'one', digest: digestOf(lost[0] as Buffer), isExecutable: false }], directories: [], symlinks: [] });
    const top = encodeDirectory({ files: [{ name: 'two', digest: digestOf(lost[1] as Buffer), isExecutable: false }], directories: [{ name: 'a', digest: digestOf(sub) }], symlinks: [] });
    const [treeRoot] = (await upload(h, top, sub)) as [Digest];
    const { action: noFiles } = await makeAction(h, { args: ['./tool'], inputRoot: treeRoot });
    err = await expectCode(collect(h.clients.exec.execute({ action_digest: msg(noFiles) })), status.FAILED_PRECONDITION);
    assert.deepEqual(missingSubjects(err).sort(), lost.map((b) => subject(digestOf(b))).sort());
  });

  test('platforms: ISA and OSFamily map to remex platforms; what no worker can serve fails at once', async (t) => {
    if (!needTools(t)) return;
    const native = await run(['print', 'native'], { platform: [['ISA', 'x86-64'], ['OSFamily', 'linux']] });
    assert.equal((await h.ts.client.getExecution(native.operations[0]?.name as string)).platform, 'x86_64-linux-cpu');
    const viaCommand = await run(['print', 'command platform'], { commandPlatform: [['remex-platform', 'x86_64-linux-cpu']] });
    assert.equal(viaCommand.response.status?.code, status.OK);

    for (const platform of [[['ISA', 'sparc-v9']], [['OSFamily', 'windows']], [['container-image', 'docker://x']], [['ISA', 'x86-64'], ['remex-platform', 'aarch64-linux-cpu']]] as Array<Array<[string, string]>>) {
      const { action } = await makeAction(h, { args: ['./tool', 'print', 'never'], inputRoot: toolRoot, platform });
      await expectCode(collect(h.clients.exec.execute({ action_digest: msg(action) })), status.FAILED_PRECONDITION);
    }
    // A platform remex knows but no worker serves (GPU) is refused at once, never queued.
    const { action: gpu } = await makeAction(h, { args: ['./tool', 'print', 'never'], inputRoot: toolRoot, platform: [['remex-platform', 'x86_64-linux-gpu']] });
    const err = await expectCode(collect(h.clients.exec.execute({ action_digest: msg(gpu) })), status.FAILED_PRECONDITION);
    assert.match(err.details, /no worker serves platform x86_64-linux-gpu/);
  });

  test('an arm-a64 action runs on the aarch64 worker, emulated under qemu-user, and its output proves it', async (t) => {
    if (!requireTools(t, 'bwrap', 'aarch64-linux-gnu-gcc', 'qemu-aarch64-static')) return;
    const armTool = readFileSync(compileC({ code: TOOL_C, name: 'reapi-tool' }, 'aarch64'));
    const root = await uploadTree(h, { tool: { data: armTool, executable: true } });
    const { action } = await makeAction(h, { args: ['./tool', 'arch'], inputRoot: root, platform: [['ISA', 'arm-a64'], ['OSFamily', 'linux']] });
    const { result, operations, response } = await execute(h, action);
    assert.equal(response.status?.code, status.OK, response.status?.message);
    assert.equal(text(await readBlob(h, result.stdout_digest)), 'aarch64\n');
    const view = await h.ts.client.getExecution(operations[0]?.name as string);
    assert.equal(view.platform, 'aarch64-linux-cpu');
    assert.equal(view.emulated, true);
    assert.match(response.message, /emulated/);
  });

  test('WaitExecution follows an execution by its name; merged in-flight actions share one; unknown names are NOT_FOUND', async (t) => {
    if (!needTools(t)) return;
    const { action } = await makeAction(h, { args: ['./tool', 'sleep', '1500'], inputRoot: toolRoot });
    const first = h.clients.exec.execute({ action_digest: msg(action) });
    const name = await new Promise<string>((resolve, reject) => {
      first.once('data', (op: { name: string }) => resolve(op.name));
      first.once('error', reject);
    });
    first.on('error', () => undefined);
    first.cancel(); // the client goes away; the execution goes on
    const merged = await collect(h.clients.exec.execute({ action_digest: msg(action) }));
    assert.equal(merged[0]?.name, name, 'an identical in-flight action is merged into the same execution');
    const waited = await collect(h.clients.exec.waitExecution({ name }));
    const last = waited[waited.length - 1];
    assert.ok(last?.done);
    assert.equal(text(await readBlob(h, responseOf(last).result?.stdout_digest ?? null)), 'started\nslept\n');
    await expectCode(collect(h.clients.exec.waitExecution({ name: 'no-such-operation' })), status.NOT_FOUND);
  });

  test('instance names keep action caches apart', async (t) => {
    if (!needTools(t)) return;
    const { action } = await makeAction(h, { args: ['./tool', 'print', 'per instance'], inputRoot: toolRoot });
    assert.equal((await execute(h, action, { instance: 'team-a' })).response.cached_result, false);
    assert.equal((await execute(h, action, { instance: 'team-a' })).response.cached_result, true);
    assert.equal((await execute(h, action, { instance: 'team-b' })).response.cached_result, false);
    await expectCode(call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action) }), status.NOT_FOUND);
    assert.ok(await call(h.clients.ac, h.clients.ac.getActionResult, { instance_name: 'team-b', action_digest: msg(action) }));
  });

  test('working directory and pre-v2.1 output_files/output_directories', async (t) => {
    if (!needTools(t)) return;
    const root = await uploadTree(h, { 'w/tool': { data: tool as Buffer, executable: true }, 'w/data/in.txt': { data: Buffer.from('input in w\n') } });
    const { action } = await makeAction(h, { args: ['./tool', 'cat', 'data/in.txt'], inputRoot: root, workingDirectory: 'w', outputFiles: ['here.txt', 'data'], outputDirectories: ['data'] });
    const { result } = await execute(h, action);
    assert.equal(text(await readBlob(h, result.stdout_digest)), 'input in w\n');
    assert.deepEqual(
      result.output_files?.map((f) => f.path),
      ['here.txt'],
    );
    assert.deepEqual(
      result.output_directories?.map((d) => d.path),
      ['data'],
    );
    const cached = await call(h.clients.ac, h.clients.ac.getActionResult, { action_digest: msg(action) });
    assert.deepEqual(
      cached.output_files.map((f) => f.path),
      ['here.txt'],
    );
    const { action: badWd } = await makeAction(h, { args: ['./tool'], inputRoot: root, workingDirectory: 'nope' });
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(badWd) })), status.INVALID_ARGUMENT);
  });

  test('requests out of bounds are INVALID_ARGUMENT: priority, timeout, paths, digests, a command line exec would refuse', async (t) => {
    if (!needTools(t)) return;
    const { action } = await makeAction(h, { args: ['./tool', 'print', 'bounds'], inputRoot: toolRoot });
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(action), execution_policy: { priority: 5000 } })), status.INVALID_ARGUMENT);
    await expectCode(collect(h.clients.exec.execute({ action_digest: { hash: 'x', size_bytes: 1 } })), status.INVALID_ARGUMENT);
    await expectCode(collect(h.clients.exec.execute({})), status.INVALID_ARGUMENT);
    const { action: long } = await makeAction(h, { args: ['./tool'], inputRoot: toolRoot, timeoutMs: 48 * 3600 * 1000 });
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(long) })), status.INVALID_ARGUMENT);
    const { action: escape } = await makeAction(h, { args: ['./tool'], inputRoot: toolRoot, outputPaths: ['../x'] });
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(escape) })), status.INVALID_ARGUMENT);
    const { action: empty } = await makeAction(h, { args: [], inputRoot: toolRoot });
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(empty) })), status.INVALID_ARGUMENT);
    const { action: huge } = await makeAction(h, { args: ['./tool', ...Array.from({ length: 12 }, () => 'a'.repeat(100 * 1024))], inputRoot: toolRoot });
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(huge) })), status.INVALID_ARGUMENT);
    const [notAnAction] = (await upload(h, Buffer.from([0x0a, 0x05, 0x01]))) as [Digest];
    await expectCode(collect(h.clients.exec.execute({ action_digest: msg(notAnAction) })), status.INVALID_ARGUMENT);
  });
});
