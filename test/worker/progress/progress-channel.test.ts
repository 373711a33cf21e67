/**
 * ProgressChannel with real files and real writer processes: incremental delivery, the rate limit, malformed
 * and over-long lines, a last line without its newline, rewrites, things planted at the path, and a flood
 * (bounded memory, a responsive event loop).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { isRemexError } from '../../../src/core/errors.js';
import { ProgressChannel } from '../../../src/worker/progress/progress-channel.js';
import type { ProgressChannelOptions, ProgressRecord } from '../../../src/worker/progress/progress-channel.js';
import type { ProgressUpdate } from '../../../src/worker/progress/progress-line.js';
import { eventually } from '../../helpers/processes.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

let scratch: string;
let dirCount = 0;
const open: ProgressChannel[] = [];
const children: ChildProcess[] = [];

async function runDir(): Promise<string> {
  const dir = join(scratch, `run-${++dirCount}`);
  await mkdir(dir);
  return dir;
}

async function channel(options: ProgressChannelOptions = {}): Promise<{ ch: ProgressChannel; delivered: ProgressRecord[]; dir: string }> {
  const dir = await runDir();
  const delivered: ProgressRecord[] = [];
  const ch = await ProgressChannel.open(dir, {
    pollIntervalMs: 20,
    minIntervalMs: 0,
    ...options,
    onUpdate: (update, atMs) => {
      delivered.push({ update, atMs });
      options.onUpdate?.(update, atMs);
    },
  });
  open.push(ch);
  return { ch, delivered, dir };
}

/** Runs `script` with sh, REMEX_PROGRESS set, to its end. */
async function sh(script: string, progressPath: string, extra: { uid?: number; gid?: number } = {}): Promise<void> {
  const child = spawn('sh', ['-c', script], { env: { PATH: process.env.PATH, REMEX_PROGRESS: progressPath }, stdio: ['ignore', 'ignore', 'pipe'], ...extra });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  assert.equal(code, 0, `writer failed: ${stderr}`);
}

/** A node child that runs `code` with REMEX_PROGRESS set; resolves when it exits with 0. */
function nodeWriter(code: string, progressPath: string): { child: ChildProcess; done: Promise<void> } {
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: { REMEX_PROGRESS: progressPath },
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<void>((res, rej) => child.on('exit', (c) => (c === 0 ? res() : rej(new Error(`writer exited ${c}: ${stderr}`)))));
  return { child, done };
}

const percents = (records: readonly ProgressRecord[]): (number | undefined)[] => records.map((r) => r.update.percent);

describe('ProgressChannel', () => {
  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'remex-progress-'));
    // The uid-65534 writer must reach its run directory.
    await chmod(scratch, 0o755);
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(open.splice(0).map((ch) => ch.close()));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  test('creates an empty regular file, mode 0600; a program that never writes leaves nothing delivered', async () => {
    const { ch, delivered, dir } = await channel();
    assert.equal(ch.path, join(dir, '.remex-progress'));
    const st = await stat(ch.path);
    assert.ok(st.isFile());
    assert.equal(st.size, 0);
    assert.equal(st.mode & 0o777, 0o600);
    await new Promise((r) => setTimeout(r, 100));
    await ch.close();
    await ch.close();
    assert.deepEqual(delivered, []);
    assert.equal(ch.latest, undefined);
    assert.deepEqual(ch.history, []);
    assert.deepEqual(ch.stats, { lines: 0, malformed: 0, dropped: 0, truncated: 0, skippedBytes: 0, rewinds: 0, listenerErrors: 0 });
    assert.equal(ch.problem, undefined);
  });

  test('delivers each line while the program runs, a line split across writes once it ends', async () => {
    const { ch, delivered } = await channel();
    // Appends what it reads on stdin, as `echo … >> "$REMEX_PROGRESS"` would: open, append, close.
    const writer = nodeWriter(
      `import { appendFileSync } from 'node:fs';
       process.stdin.setEncoding('utf8');
       process.stdin.on('data', (s) => appendFileSync(process.env.REMEX_PROGRESS, JSON.parse(s)));`,
      ch.path,
    );
    const say = (s: string): void => void writer.child.stdin?.write(JSON.stringify(s));
    say('10 staging\n');
    await eventually(async () => (delivered.length === 1 ? true : undefined), 5000, 'the first update');
    assert.deepEqual(delivered[0]?.update, { percent: 10, message: 'staging' });
    say('{"percent":20,"metrics":{"copy_mbps":1.5}}\n');
    await eventually(async () => (delivered.length === 2 ? true : undefined), 5000, 'the second update');
    say('5');
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(delivered.length, 2, 'half a line is not a line');
    say('0 split\n{"metrics":{"x":1}}\n');
    await eventually(async () => (delivered.length === 4 ? true : undefined), 5000, 'the split line');
    assert.equal(writer.child.exitCode, null, 'all of it arrived while the writer ran');
    writer.child.stdin?.end();
    await writer.done;
    await ch.close();
    assert.deepEqual(
      delivered.map((r) => r.update),
      [{ percent: 10, message: 'staging' }, { percent: 20, metrics: { copy_mbps: 1.5 } }, { percent: 50, message: 'split' }, { percent: 50, metrics: { x: 1 } }],
      'a line without a percent carries the last one',
    );
    assert.deepEqual(ch.history, delivered);
    assert.deepEqual(ch.latest, delivered[3]);
    assert.equal(ch.stats.lines, 4);
    assert.ok(delivered.every((r, i) => i === 0 || r.atMs >= (delivered[i - 1]?.atMs ?? 0)));
  });

  test('rate limit: at most one update per interval, the latest wins, and it arrives without close', async () => {
    const times: number[] = [];
    const { ch, delivered } = await channel({ minIntervalMs: 400, onUpdate: () => times.push(Date.now()) });
    await sh('i=1; while [ $i -le 60 ]; do echo "$i step $i" >> "$REMEX_PROGRESS"; i=$((i+1)); done', ch.path);
    await eventually(async () => (ch.latest?.update.percent === 60 ? true : undefined), 5000, 'the last line delivered');
    assert.deepEqual(ch.latest?.update, { percent: 60, message: 'step 60' });
    assert.ok(delivered.length >= 2 && delivered.length <= 4, `${delivered.length} updates: ${percents(delivered).join(' ')}`);
    for (let i = 1; i < times.length; i++) assert.ok((times[i] ?? 0) - (times[i - 1] ?? 0) >= 390, `deliveries ${times.join(', ')}`);
    await ch.close();
    assert.equal(ch.stats.lines, 60);
    assert.equal(ch.stats.dropped, 60 - delivered.length);
  });

  test('close delivers the update the rate limit held back, at once', async () => {
    const { ch, delivered } = await channel({ minIntervalMs: 60_000 });
    await sh('echo 1 >> "$REMEX_PROGRESS"; echo 2 >> "$REMEX_PROGRESS"; echo "3 final" >> "$REMEX_PROGRESS"', ch.path);
    const started = Date.now();
    await ch.close();
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(percents(delivered), [1, 3]);
    assert.equal(ch.stats.dropped, 1);
  });

  test('malformed lines are counted, explained and ignored', async () => {
    const { ch, delivered } = await channel();
    await sh(
      `printf '%s\\n' 10 garbage '{"percent":200}' '' '{"metrics":{"__proto__":1}}' '20 fine' >> "$REMEX_PROGRESS"`,
      ch.path,
    );
    await ch.close();
    assert.deepEqual(percents(delivered), [10, 20]);
    assert.equal(ch.stats.lines, 6);
    assert.equal(ch.stats.malformed, 4);
    assert.match(ch.lastMalformed?.reason ?? '', /metric name "__proto__"/);
  });

  test('a last line without its newline is read at close', async () => {
    const { ch, delivered } = await channel();
    await sh(`printf '10\\n77 last words' >> "$REMEX_PROGRESS"`, ch.path);
    await eventually(async () => (ch.latest !== undefined ? true : undefined), 5000, 'the first line');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(percents(delivered), [10]);
    await ch.close();
    assert.deepEqual(ch.latest?.update, { percent: 77, message: 'last words' });
  });

  test('a program that rewrites the file (`>` instead of `>>`) is followed', async () => {
    const { ch, delivered } = await channel();
    await sh(
      'echo "9 a" > "$REMEX_PROGRESS"; sleep 0.2; echo "10 longer" > "$REMEX_PROGRESS"; sleep 0.2; echo "11 c" > "$REMEX_PROGRESS"; sleep 0.2; echo "12 d" > "$REMEX_PROGRESS"',
      ch.path,
    );
    await ch.close();
    assert.deepEqual(percents(delivered), [9, 10, 11, 12]);
    assert.equal(ch.stats.malformed, 0);
    assert.ok(ch.stats.rewinds >= 3, `rewinds ${ch.stats.rewinds}`);
  });

  test('a 10 MiB line without a newline is dropped whole, in bounded memory, and the channel goes on', async (t) => {
    const { ch, delivered } = await channel({ pollIntervalMs: 50 });
    const baseline = process.memoryUsage();
    let peakBuffers = 0;
    const sampler = setInterval(() => (peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers - baseline.arrayBuffers)), 5);
    const writer = nodeWriter(
      `import { openSync, writeSync } from 'node:fs';
       const fd = openSync(process.env.REMEX_PROGRESS, 'a');
       const pause = () => new Promise((r) => setTimeout(r, 500));
       writeSync(fd, '5 before\\n');
       await pause();
       const chunk = Buffer.alloc(64 * 1024, 'x');
       for (let i = 0; i < 160; i++) { writeSync(fd, chunk); if (i % 16 === 0) await new Promise((r) => setTimeout(r, 20)); }
       await pause();
       writeSync(fd, '\\n42 after\\n');
       await pause();
       for (let i = 0; i < 160; i++) writeSync(fd, chunk);`,
      ch.path,
    );
    await writer.done;
    assert.equal(ch.latest?.update.percent, 42, 'the line after the long one');
    await ch.close();
    clearInterval(sampler);
    assert.equal((await stat(ch.path)).size, 20 * 1024 * 1024 + 19);
    assert.deepEqual(percents(delivered), [5, 42]);
    t.diagnostic(`stats ${JSON.stringify(ch.stats)}; buffers grew at most ${peakBuffers} bytes`);
    assert.equal(ch.stats.truncated, 2, 'the long line, and the one cut by the end');
    assert.equal(ch.stats.malformed, 0);
    assert.ok(peakBuffers < 4 * 1024 * 1024, `buffers grew by ${peakBuffers} bytes`);
  });

  test('a writer further ahead than a poll reads is caught up at the tail: the last line wins, the rest is counted skipped', async () => {
    const { ch, delivered } = await channel({ maxReadBytesPerPoll: 8192, maxLineBytes: 4096, pollIntervalMs: 50 });
    await sh('i=0; while [ $i -lt 3000 ]; do echo "$((i / 30)).5 line $i"; i=$((i+1)); done >> "$REMEX_PROGRESS"; echo "100 last" >> "$REMEX_PROGRESS"', ch.path);
    await ch.close();
    assert.deepEqual(ch.latest?.update, { percent: 100, message: 'last' });
    assert.ok(ch.stats.skippedBytes > 0, JSON.stringify(ch.stats));
    assert.ok(ch.stats.lines < 3001, JSON.stringify(ch.stats));
    assert.equal(ch.stats.malformed, 0, 'a jump never parses half a line');
    assert.equal(ch.stats.truncated, 0, 'nor counts a short line it entered mid-way as truncated');
    assert.ok(delivered.length >= 1);
  });

  describe('something planted at the path', () => {
    test('before open: a symlink, a FIFO or a directory is refused with INVALID_ARGUMENT and left alone', async () => {
      const secret = join(scratch, 'secret');
      await writeFile(secret, '66 secret\n');
      const plant: Record<string, (path: string) => Promise<void>> = {
        symlink: (path) => symlink(secret, path),
        'dangling symlink': (path) => symlink(join(scratch, 'nowhere'), path),
        FIFO: async (path) => {
          assert.equal(spawnSync('mkfifo', [path]).status, 0);
        },
        directory: (path) => mkdir(path),
      };
      for (const [what, make] of Object.entries(plant)) {
        const dir = await runDir();
        await make(join(dir, '.remex-progress'));
        await assert.rejects(ProgressChannel.open(dir), (err: unknown) => {
          assert.ok(isRemexError(err, 'INVALID_ARGUMENT'), String(err));
          assert.match(err.message, new RegExp(`holds a ${what.split(' ').pop() ?? ''}`));
          return true;
        }, what);
      }
      assert.equal(await readFile(secret, 'utf8'), '66 secret\n');
      assert.equal(existsSync(join(scratch, 'nowhere')), false);
    });

    test('after open: replaced by a symlink to a secret, a FIFO or a directory — never opened, reported, the original still read', async () => {
      const secret = join(scratch, 'shadow');
      await writeFile(secret, '66 secret\n');
      // Each swap, then a write by path where that cannot block (opening a FIFO with no reader would).
      const replacements: Record<string, string> = {
        symlink: `ln -s '${secret}' "$REMEX_PROGRESS"; echo 30 >> "$REMEX_PROGRESS"`,
        FIFO: 'mkfifo "$REMEX_PROGRESS"',
        directory: 'mkdir "$REMEX_PROGRESS"; echo 30 >> "$REMEX_PROGRESS" 2>/dev/null || true',
      };
      for (const [what, replace] of Object.entries(replacements)) {
        const { ch, delivered } = await channel();
        // The program keeps a descriptor of the original open and writes through it after the swap.
        await sh(`exec 3>>"$REMEX_PROGRESS"; echo 10 >&3; rm "$REMEX_PROGRESS"; ${replace}; echo 20 >&3`, ch.path);
        await eventually(async () => (ch.problem !== undefined ? true : undefined), 5000, `the ${what} noticed`);
        assert.match(ch.problem ?? '', new RegExp(`replaced by a ${what}`));
        const started = Date.now();
        await ch.close();
        assert.ok(Date.now() - started < 1000, 'close does not wait on what was planted');
        assert.deepEqual(percents(delivered), [10, 20], what);
        assert.ok(delivered.every((r) => r.update.message !== 'secret'));
      }
      assert.equal(await readFile(secret, 'utf8'), '66 secret\n30\n', 'the symlink was followed by the program only');
    });

    test('after open: removed', async () => {
      const { ch } = await channel();
      await sh('echo 10 >> "$REMEX_PROGRESS"; rm "$REMEX_PROGRESS"', ch.path);
      await eventually(async () => (ch.problem !== undefined ? true : undefined), 5000, 'the removal noticed');
      assert.match(ch.problem ?? '', /removed/);
      await ch.close();
      assert.equal(ch.latest?.update.percent, 10);
    });
  });

  test('a flood of 200k lines: bounded memory, a responsive event loop, the last line delivered', async (t) => {
    const { ch, delivered } = await channel({ pollIntervalMs: 100, minIntervalMs: 100, historyLimit: 8 });
    const baseline = process.memoryUsage();
    let peakBuffers = 0;
    let peakHeap = 0;
    let maxLagMs = 0;
    let ticking = true;
    const tick = (): void => {
      const due = Date.now() + 10;
      setTimeout(() => {
        maxLagMs = Math.max(maxLagMs, Date.now() - due);
        const m = process.memoryUsage();
        peakBuffers = Math.max(peakBuffers, m.arrayBuffers - baseline.arrayBuffers);
        peakHeap = Math.max(peakHeap, m.heapUsed - baseline.heapUsed);
        if (ticking) tick();
      }, 10);
    };
    tick();
    // 100k lines a second for two seconds, then a last one.
    const writer = nodeWriter(
      `import { openSync, writeSync } from 'node:fs';
       const fd = openSync(process.env.REMEX_PROGRESS, 'a');
       let n = 0;
       for (let batch = 0; batch < 20; batch++) {
         let s = '';
         for (let i = 0; i < 10000; i++, n++) s += (n % 5 === 0 ? '{"percent":' + (n / 2000).toFixed(3) + ',"metrics":{"n":' + n + '}}' : (n / 2000).toFixed(3) + ' line ' + n) + '\\n';
         writeSync(fd, s);
         await new Promise((r) => setTimeout(r, 100));
       }
       writeSync(fd, '100 done\\n');`,
      ch.path,
    );
    await writer.done;
    await ch.close();
    ticking = false;
    t.diagnostic(`stats ${JSON.stringify(ch.stats)}; ${delivered.length} delivered; max lag ${maxLagMs} ms; buffers +${peakBuffers} B, heap +${peakHeap} B at most`);
    assert.deepEqual(ch.latest?.update, { percent: 100, message: 'done' });
    assert.equal(ch.stats.malformed, 0);
    assert.equal(ch.stats.truncated, 0);
    assert.ok(ch.history.length <= 8);
    assert.ok(delivered.length <= 2 + 3000 / 100, `${delivered.length} deliveries in about 2 s at one per 100 ms`);
    assert.ok(ch.stats.lines > 1000, `lines ${ch.stats.lines}`);
    assert.ok(maxLagMs < 200, `the event loop lagged ${maxLagMs} ms`);
    assert.ok(peakBuffers < 8 * 1024 * 1024, `buffers grew by ${peakBuffers} bytes`);
    assert.ok(peakHeap < 32 * 1024 * 1024, `heap grew by ${peakHeap} bytes`);
  });

  test('fileOwner: a program running as uid 65534 can write the file it was given', { skip: !isRoot && 'needs root to chown' }, async () => {
    const { ch, delivered } = await channel({ fileOwner: { uid: NOBODY, gid: NOBODY } });
    const st = await stat(ch.path);
    assert.equal(st.uid, NOBODY);
    assert.equal(st.mode & 0o777, 0o600);
    await sh('echo "33 as nobody" >> "$REMEX_PROGRESS"', ch.path, { uid: NOBODY, gid: NOBODY });
    await ch.close();
    assert.deepEqual(delivered.map((r) => r.update), [{ percent: 33, message: 'as nobody' }]);
  });

  test('options are checked', async () => {
    const dir = await runDir();
    for (const bad of [{ fileName: '../x' }, { fileName: '' }, { pollIntervalMs: 0 }, { minIntervalMs: -1 }, { maxLineBytes: 1.5 }, { historyLimit: 0 }, { maxReadBytesPerPoll: 10, maxLineBytes: 100 }]) {
      await assert.rejects(ProgressChannel.open(dir, bad), (err: unknown) => isRemexError(err, 'INVALID_ARGUMENT'), JSON.stringify(bad));
    }
    assert.equal(existsSync(join(dir, '.remex-progress')), false);
  });

  test('a listener that throws is counted and does not stop the channel', async () => {
    const seen: ProgressUpdate[] = [];
    const { ch } = await channel({
      onUpdate: (u) => {
        seen.push(u);
        throw new Error('listener bug');
      },
    });
    await sh('echo 1 >> "$REMEX_PROGRESS"; sleep 0.1; echo 2 >> "$REMEX_PROGRESS"', ch.path);
    await ch.close();
    assert.deepEqual(seen.map((u) => u.percent), [1, 2]);
    assert.equal(ch.stats.listenerErrors, 2);
  });
});
