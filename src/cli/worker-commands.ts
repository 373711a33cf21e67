/**
 * `remex workers` (the table) and `remex worker drain NAME|--generation G`: draining by hand and blue/green.
 * A worker's generation is its `generation` label (`remex worker --generation green`). Draining a whole
 * generation is refused when it would leave a platform with no worker taking work (start the next
 * generation first; `--force` overrides), so a rollout never has a moment where a platform has none.
 */
import { InvalidArgumentError, NotFoundError, RemexError } from '../core/errors.js';
import type { ListedWorker, RemexClient } from '../client/remex-client.js';
import { formatLabels, formatTable } from './table.js';

export const GENERATION_LABEL = 'generation';

/** The labels of `remex worker`, with `--generation` as the `generation` label. */
export function withGeneration(labels: Record<string, string>, generation: string | undefined): Record<string, string> {
  if (generation === undefined) return labels;
  const given = labels[GENERATION_LABEL];
  if (given !== undefined && given !== generation) throw new InvalidArgumentError(`--generation ${generation} and --label ${GENERATION_LABEL}=${given} disagree`);
  return { ...labels, [GENERATION_LABEL]: generation };
}

function since(ms: number, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export function formatWorkers(workers: readonly ListedWorker[], nowMs = Date.now()): string {
  const rows = workers.map((w) => {
    const emulated = w.platforms.filter((p) => p.emulated).length;
    const mode = emulated === 0 ? 'native' : emulated === w.platforms.length ? 'emulated' : 'mixed';
    const { [GENERATION_LABEL]: generation, ...labels } = w.labels ?? {};
    return [
      w.id,
      w.name,
      w.platforms.map((p) => `${p.platform}${p.emulated ? '(emulated)' : ''}`).join(','),
      mode,
      generation ?? '-',
      String(w.slots),
      w.running === undefined ? '-' : String(w.running),
      formatPrice(w.price),
      w.drainRequested && w.state === 'active' ? 'drain-ordered' : w.state,
      since(w.state === 'gone' ? w.lastSeenAtMs : w.registeredAtMs, nowMs),
      formatLabels(labels),
    ];
  });
  return formatTable(['ID', 'NAME', 'PLATFORMS', 'MODE', 'GENERATION', 'SLOTS', 'RUNNING', 'PRICE/H', 'STATE', 'SINCE', 'LABELS'], rows);
}

/** `0.034`, the worker's own price; `0.034 (platform)`, the server's default for its platform; `-`, none. */
function formatPrice(price: ListedWorker['price']): string {
  if (!price) return '-';
  const perHour = String(Number(price.perHour.toPrecision(6)));
  return price.from === 'platform' ? `${perHour} (platform)` : perHour;
}

const takesWork = (w: ListedWorker): boolean => w.state === 'active' && !w.drainRequested;

/** The workers `remex worker drain` would order, and the platforms that would be left with no worker. */
export function drainPlan(workers: readonly ListedWorker[], select: { name?: string; generation?: string }): { targets: ListedWorker[]; orphaned: string[] } {
  const targets = workers.filter(
    (w) => takesWork(w) && (select.name === undefined || w.name === select.name || w.id === select.name) && (select.generation === undefined || w.labels[GENERATION_LABEL] === select.generation),
  );
  const chosen = new Set(targets.map((w) => w.id));
  const remaining = workers.filter((w) => takesWork(w) && !chosen.has(w.id));
  const platforms = new Set(targets.flatMap((w) => w.platforms.map((p) => p.platform)));
  const orphaned = [...platforms].filter((p) => !remaining.some((w) => w.platforms.some((o) => o.platform === p))).sort();
  return { targets, orphaned };
}

export async function drainCommand(client: RemexClient, select: { name?: string; generation?: string; force: boolean }): Promise<string> {
  if ((select.name === undefined) === (select.generation === undefined)) throw new InvalidArgumentError('name a worker, or give --generation G (one of the two)');
  const { targets, orphaned } = drainPlan(await client.workers(), select);
  const what = select.name !== undefined ? `worker ${select.name}` : `generation ${select.generation}`;
  if (targets.length === 0) throw new NotFoundError(`no worker taking work matches ${what}`);
  if (orphaned.length > 0 && !select.force) {
    throw new RemexError('FAILED_PRECONDITION', `draining ${what} would leave ${orphaned.join(', ')} with no worker taking work: start the next generation first (or --force)`, { details: { orphaned } });
  }
  const lines: string[] = [];
  for (const w of targets) {
    await client.drainWorker(w.id);
    lines.push(`drain ordered for ${w.id} (${w.name}): it stops once its jobs are committed`);
  }
  return `${lines.join('\n')}\n`;
}
