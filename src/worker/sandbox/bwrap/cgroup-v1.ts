/**
 * cgroup v1 adapter: a run gets one directory in each of the memory, pids and cpuacct hierarchies
 * (whichever the host has), all with the same name under the configured parent.
 */
import { join } from 'node:path';
import {
  type CgroupDriver,
  type CgroupEnforcement,
  type CgroupLimits,
  type CgroupSample,
  type CgroupWrite,
  type RunCgroup,
  CgroupCounterFiles,
  keyedValue,
  killUntilEmpty,
  makeCgroupDir,
  readPids,
  removeCgroupDir,
} from './cgroups.js';

/** Parent directory of run cgroups in each v1 hierarchy the sandbox uses (absent: not available). */
export interface CgroupV1Parents {
  memory?: string;
  pids?: string;
  cpuacct?: string;
}

export class CgroupV1Driver implements CgroupDriver {
  readonly version = 1;
  readonly enforces: CgroupEnforcement;
  readonly description: string;

  constructor(
    private readonly parents: CgroupV1Parents,
    /** memory.memsw.* exists (swap accounting on), so swap can be capped too. */
    private readonly hasMemsw: boolean,
  ) {
    this.enforces = { memory: parents.memory !== undefined, processes: parents.pids !== undefined, cpuTime: parents.cpuacct !== undefined };
    this.description = `cgroup v1 (${Object.entries(parents)
      .map(([controller, dir]) => `${controller} under ${dir}`)
      .join(', ')})`;
  }

  async create(name: string, limits: CgroupLimits): Promise<RunCgroup> {
    const dirs: CgroupV1Parents = {};
    if (this.parents.memory) dirs.memory = join(this.parents.memory, name);
    if (this.parents.pids) dirs.pids = join(this.parents.pids, name);
    if (this.parents.cpuacct) dirs.cpuacct = join(this.parents.cpuacct, name);
    const made: string[] = [];
    try {
      for (const dir of Object.values(dirs) as string[]) {
        makeCgroupDir(dir);
        made.push(dir);
      }
    } catch (err) {
      // Only remove what this call made: a name clash must not delete another run's cgroup.
      await Promise.all(made.map((dir) => removeCgroupDir(dir).catch(() => undefined)));
      throw err;
    }
    const setup: CgroupWrite[] = [];
    if (dirs.memory) {
      // memsw (memory + swap) may never be below the memory limit, so memory goes first.
      setup.push({ file: join(dirs.memory, 'memory.limit_in_bytes'), value: String(limits.memoryBytes) });
      if (this.hasMemsw) setup.push({ file: join(dirs.memory, 'memory.memsw.limit_in_bytes'), value: String(limits.memoryBytes) });
    }
    if (dirs.pids) setup.push({ file: join(dirs.pids, 'pids.max'), value: String(limits.tasks) });
    // `tasks` moves just the writing thread, which skips the global threadgroup lock (and the RCU
    // grace period it costs, ~10 ms) that moving a whole process through cgroup.procs takes.
    for (const dir of Object.values(dirs) as string[]) setup.push({ file: join(dir, 'tasks'), value: '0' });
    return new CgroupV1Run(dirs, setup);
  }
}

class CgroupV1Run implements RunCgroup {
  private readonly anyDir: string;
  private readonly counters = new CgroupCounterFiles();

  constructor(
    private readonly dirs: CgroupV1Parents,
    readonly setup: readonly CgroupWrite[],
  ) {
    // Every hierarchy holds the same processes; pids is listed first because it counts threads exactly.
    this.anyDir = (dirs.pids ?? dirs.memory ?? dirs.cpuacct) as string;
  }

  async sample(): Promise<CgroupSample> {
    const { memory, pids, cpuacct } = this.dirs;
    const cpuNs = cpuacct ? this.counters.readNumber(join(cpuacct, 'cpuacct.usage')) : null;
    const peak = memory ? this.counters.readNumber(join(memory, 'memory.max_usage_in_bytes')) : null;
    const oomControl = memory ? this.counters.read(join(memory, 'memory.oom_control')) : null;
    const pidsEvents = pids ? this.counters.read(join(pids, 'pids.events')) : null;
    return {
      cpuTimeNs: cpuNs,
      peakMemoryBytes: peak,
      oomKills: keyedValue(oomControl, 'oom_kill') ?? 0,
      taskLimitHits: keyedValue(pidsEvents, 'max') ?? 0,
    };
  }

  pids(): Promise<number[]> {
    return readPids(join(this.anyDir, 'cgroup.procs'));
  }

  killAll(deadlineMs?: number): Promise<boolean> {
    return killUntilEmpty(() => this.pids(), deadlineMs);
  }

  async remove(): Promise<void> {
    this.counters.close();
    await Promise.all(Object.values(this.dirs).map((dir: string) => removeCgroupDir(dir)));
  }
}
