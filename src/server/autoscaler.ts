/**
 * The autoscaler in `remex serve --autoscale FILE`: one provider per pool (from the configuration), the
 * controller fed by the scheduler's observer, started once the server listens (its URL is what local
 * workers report to), leader among controllers through the store's LeaderLease.
 */
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { CommandProvider } from '../autoscale/command-provider.js';
import type { AutoscaleConfig } from '../autoscale/config.js';
import { Autoscaler } from '../autoscale/controller.js';
import { LocalProcessProvider } from '../autoscale/local-process-provider.js';
import type { WorkerProvider } from '../autoscale/provider.js';
import { SqliteLeaderLease } from '../store/sqlite/leader-lease.js';
import type { Scheduler } from '../scheduler/scheduler.js';
import type { Store } from '../store/ports.js';

/** bin/remex.js, from dist/src/server/. */
export const REMEX_BIN = resolve(import.meta.dirname, '..', '..', '..', 'bin', 'remex.js');

export function createAutoscaler(config: AutoscaleConfig, dataDir: string, logger: Logger): Autoscaler {
  const log = logger.child({ component: 'autoscaler' });
  const providers = new Map<string, WorkerProvider>();
  for (const pool of config.pools) {
    const p = pool.provider;
    providers.set(
      pool.name,
      p.type === 'local-process'
        ? new LocalProcessProvider({ remexBin: REMEX_BIN, workRoot: p.workDir ?? join(dataDir, 'autoscaled', pool.name), extraArgs: p.args, logger: log })
        : new CommandProvider({ scaleOut: p.scaleOut, scaleIn: p.scaleIn, timeoutSeconds: p.timeoutSeconds, attempts: p.attempts, logger: log }),
    );
  }
  return new Autoscaler({ config, providers, logger: log });
}

export function startAutoscaler(autoscaler: Autoscaler, deps: { scheduler: Scheduler; store: Store; url: string }): { close: () => Promise<void> } {
  autoscaler.start({
    fleet: deps.scheduler,
    runningByWorker: () => deps.store.jobs.runningByWorker(),
    // A store without a lease of its own is one controller's.
    lease: deps.store.leader ?? new SqliteLeaderLease(),
    servers: () => [deps.url],
  });
  return { close: () => autoscaler.close() };
}
