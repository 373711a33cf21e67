/**
 * cgroup v2 adapter: a run gets one directory under a parent whose `cgroup.subtree_control` enables
 * the memory and pids controllers (a cgroup delegated to remex, e.g. by systemd's `Delegate=yes`).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type CgroupDriver,
  type CgroupEnforcement,
  type CgroupLimits,
  type CgroupSample,
  type CgroupWrite,
  type RunCgroup,
  CgroupCounterFiles,
  isErrno,
  keyedValue,
  killUntilEmpty,
  makeCgroupDir,
  readPids,
  removeCgroupDir,
} from './cgroups.js';

export class CgroupV2Driver implements CgroupDriver {
  readonly version = 2;
  readonly enforces: CgroupEnforcement;
  readonly description: string;

  /** `controllers`: those enabled in the parent's cgroup.subtree_control. */
  constructor(
    private readonly parentDir: string,
    controllers: ReadonlySet<string>,
  ) {
    // cpu.stat's usage is reported without the cpu controller, so CPU time is always measurable.
    this.enforces = { memory: controllers.has('memory'), processes: controllers.has('pids'), cpuTime: true };
    this.description = `cgroup v2 under ${parentDir} (${[...controllers].join(', ') || 'no controllers'})`;
  }

  async create(name: string, limits: CgroupLimits): Promise<RunCgroup> {
    const dir = join(this.parentDir, name);
    makeCgroupDir(dir);
    try {
      // Files a kernel may lack are written here, where their absence can be tolerated.
      if (this.enforces.memory) {
        await Promise.all([
          writeOptional(join(dir, 'memory.swap.max'), '0'),
          // One OOM kill takes the whole run: the same "a breached limit ends the run" rule as v1's poll.
          writeOptional(join(dir, 'memory.oom.group'), '1'),
        ]);
      }
    } catch (err) {
      await removeCgroupDir(dir).catch(() => undefined);
      throw err;
    }
    const setup: CgroupWrite[] = [];
    if (this.enforces.memory) setup.push({ file: join(dir, 'memory.max'), value: String(limits.memoryBytes) });
    if (this.enforces.processes) setup.push({ file: join(dir, 'pids.max'), value: String(limits.tasks) });
    setup.push({ file: join(dir, 'cgroup.procs'), value: '0' });
    return new CgroupV2Run(dir, setup);
  }
}

class CgroupV2Run implements RunCgroup {
  private readonly counters = new CgroupCounterFiles();

  constructor(
    private readonly dir: string,
    readonly setup: readonly CgroupWrite[],
  ) {}

  async sample(): Promise<CgroupSample> {
    const cpuStat = this.counters.read(join(this.dir, 'cpu.stat'));
    const peak = this.counters.readNumber(join(this.dir, 'memory.peak'));
    const memoryEvents = this.counters.read(join(this.dir, 'memory.events'));
    const pidsEvents = this.counters.read(join(this.dir, 'pids.events'));
    const usageUs = keyedValue(cpuStat, 'usage_usec');
    return {
      cpuTimeNs: usageUs === null ? null : usageUs * 1000,
      peakMemoryBytes: peak,
      oomKills: keyedValue(memoryEvents, 'oom_kill') ?? 0,
      taskLimitHits: keyedValue(pidsEvents, 'max') ?? 0,
    };
  }

  pids(): Promise<number[]> {
    return readPids(join(this.dir, 'cgroup.procs'));
  }

  async killAll(deadlineMs?: number): Promise<boolean> {
    // cgroup.kill (Linux 5.14+) kills the whole tree atomically, even one that is forking.
    await writeOptional(join(this.dir, 'cgroup.kill'), '1');
    return killUntilEmpty(() => this.pids(), deadlineMs);
  }

  remove(): Promise<void> {
    this.counters.close();
    return removeCgroupDir(this.dir);
  }
}

async function writeOptional(path: string, value: string): Promise<void> {
  try {
    await writeFile(path, value);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}
