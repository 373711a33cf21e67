/**
 * Arrival traces for the simulator: read from a file (JSON array or CSV of arrival and service seconds) or
 * generated from a named pattern with a seeded generator, so a run is the same every time.
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../core/errors.js';

export interface TraceJob {
  /** Seconds from the trace's start. */
  at: number;
  /** The job's run time, seconds. */
  service: number;
}

export const PATTERNS = ['steady', 'spike', 'diurnal', 'bursts'] as const;
export type Pattern = (typeof PATTERNS)[number];

/** mulberry32: small, fast, good enough for traces; seeded so a trace is reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Poisson arrivals of a rate that varies with time (thinning), each with a gamma(2)-distributed run time. */
function poisson(rand: () => number, durationS: number, peakRate: number, rateAt: (t: number) => number, meanServiceS: number): TraceJob[] {
  const jobs: TraceJob[] = [];
  let t = 0;
  for (;;) {
    t += -Math.log(1 - rand()) / peakRate;
    if (t >= durationS) return jobs;
    if (rand() * peakRate > rateAt(t)) continue;
    const service = (meanServiceS / 2) * (-Math.log(1 - rand()) - Math.log(1 - rand()));
    jobs.push({ at: t, service: Math.max(0.05, service) });
  }
}

/**
 * - steady: 3 jobs/s with Poisson noise for 2 hours (10 s jobs: ~30 busy slots);
 * - spike: 0.3/s, ramping over 90 s to 3/s for 10 minutes, then back: one hour;
 * - diurnal: a day compressed into 4 hours, 0.1/s at night to 2/s at noon;
 * - bursts: 120 jobs within 10 s every 15 minutes, nothing between: two hours.
 */
export function patternTrace(pattern: Pattern, seed = 1): TraceJob[] {
  const rand = seededRandom(seed);
  switch (pattern) {
    case 'steady':
      return poisson(rand, 7200, 3, () => 3, 10);
    case 'spike': {
      const rate = (t: number): number => {
        const up = 1200;
        const ramp = 90;
        const top = up + ramp + 600;
        if (t < up || t > top + ramp) return 0.3;
        if (t < up + ramp) return 0.3 + (2.7 * (t - up)) / ramp;
        if (t <= top) return 3;
        return 3 - (2.7 * (t - top)) / ramp;
      };
      return poisson(rand, 3600, 3, rate, 10);
    }
    case 'diurnal':
      return poisson(rand, 14_400, 2, (t) => 0.1 + 1.9 * (0.5 - 0.5 * Math.cos((2 * Math.PI * t) / 14_400)), 10);
    case 'bursts': {
      const jobs: TraceJob[] = [];
      for (let start = 60; start < 7200; start += 900) {
        for (let i = 0; i < 120; i++) jobs.push({ at: start + rand() * 10, service: 2 + rand() * 6 });
      }
      return jobs.sort((a, b) => a.at - b.at);
    }
  }
}

/** A trace file: a JSON array of `{at, service}` (seconds), or CSV lines `at,service` (a header line is skipped). */
export function readTrace(path: string): TraceJob[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read trace ${path}: ${(err as Error).message}`, { cause: err });
  }
  const jobs: TraceJob[] = [];
  const bad = (where: string, what: string): never => {
    throw new InvalidArgumentError(`trace ${path}, ${where}: ${what}`);
  };
  if (text.trimStart().startsWith('[')) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return bad('JSON', (err as Error).message);
    }
    (doc as unknown[]).forEach((j, i) => {
      const { at, service } = (j ?? {}) as { at?: unknown; service?: unknown };
      if (typeof at !== 'number' || !(at >= 0) || typeof service !== 'number' || !(service > 0)) bad(`entry ${i}`, 'expected {"at": seconds ≥ 0, "service": seconds > 0}');
      jobs.push({ at: at as number, service: service as number });
    });
  } else {
    text.split('\n').forEach((line, i) => {
      const cells = line.trim().split(',');
      if (line.trim() === '' || (i === 0 && Number.isNaN(Number(cells[0])))) return;
      const at = Number(cells[0]);
      const service = Number(cells[1]);
      if (!(at >= 0) || !(service > 0)) bad(`line ${i + 1}`, 'expected "at,service" in seconds (at ≥ 0, service > 0)');
      jobs.push({ at, service });
    });
  }
  if (jobs.length === 0) bad('(whole file)', 'no jobs');
  return jobs.sort((a, b) => a.at - b.at);
}
