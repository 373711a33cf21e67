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
import type { Metrics } from '../metrics/metrics.js';

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

/**
 * The autoscaler's pools as gauges (docs/metrics.md): what it wants and what it has, read from its state at
 * each scrape; only the leader's are non-zero, so a sum over controllers is the fleet's.
 */
export function autoscalerMetrics(metrics: Metrics, autoscaler: Autoscaler): void {
  const pools = () => {
    const state = autoscaler.state();
    return state.leader ? state.pools : [];
  };
  metrics.gauge({
    name: 'remex_autoscaler_desired_workers',
    help: 'Workers the autoscaler wants in each pool (its last decision; the leader only).',
    labelNames: ['pool'],
    read: (set) => {
      for (const p of pools()) set({ pool: p.name }, p.desired);
    },
  });
  metrics.gauge({
    name: 'remex_autoscaler_actual_workers',
    help: 'Workers of each pool registered and taking work, plus those asked for and still starting (the leader only).',
    labelNames: ['pool', 'state'],
    read: (set) => {
      for (const p of pools()) {
        set({ pool: p.name, state: 'active' }, p.active);
        set({ pool: p.name, state: 'starting' }, p.starting);
        set({ pool: p.name, state: 'draining' }, p.draining);
      }
    },
  });
}
