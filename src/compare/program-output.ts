/**
 * What a comparison reads in a program's standard output: the metrics it reports of itself
 * (`REMEX_METRIC name=value unit [higher|lower]`) and, apart from those lines, its answer — digested so that
 * platforms that disagree are found (a cross-architecture bug is a finding, not noise).
 */
import { createHash } from 'node:crypto';
import type { MetricValue } from './comparison.js';

const METRIC_LINE = /^REMEX_METRIC\s+([A-Za-z_][A-Za-z0-9_.-]{0,63})=(\S+)(?:\s+(.*))?$/;

/** A rate (`GB/s`, `ops/sec`, `per_s`) is better higher; anything else (a time, bytes) better lower. */
export function guessHigherIsBetter(unit: string): boolean {
  return /\/\s*(s|sec|second)$|per[ _-]?s(ec(ond)?)?$|^hz$|flops$|ips$/i.test(unit.trim());
}

/** One metric line, or undefined when the line is not one (or its value is not a finite number). */
export function parseMetricLine(line: string): { name: string; metric: MetricValue } | undefined {
  const m = METRIC_LINE.exec(line.trimEnd());
  if (!m) return undefined;
  const value = Number(m[2]);
  if (!Number.isFinite(value)) return undefined;
  let unit = (m[3] ?? '').trim();
  let higherIsBetter: boolean;
  const direction = /\s*\b(higher|lower)$/.exec(unit);
  if (direction) {
    higherIsBetter = direction[1] === 'higher';
    unit = unit.slice(0, direction.index).trim();
  } else {
    higherIsBetter = guessHigherIsBetter(unit);
  }
  return { name: m[1]!, metric: { value, unit, higherIsBetter } };
}

export interface ReadOutput {
  /** SHA-256 (hex) of the output with the metric lines taken out. */
  digest: string;
  metrics: Record<string, MetricValue>;
}

/** Splits a program's stdout into its answer (digested) and its metrics (the last value of each name wins). */
export function readProgramOutput(stdout: Buffer): ReadOutput {
  const hash = createHash('sha256');
  const metrics: Record<string, MetricValue> = {};
  const text = stdout.toString('latin1'); // byte for byte: the digest covers the exact bytes kept
  let start = 0;
  while (start < text.length) {
    const nl = text.indexOf('\n', start);
    const end = nl < 0 ? text.length : nl + 1;
    const line = text.slice(start, end);
    const parsed = line.startsWith('REMEX_METRIC') ? parseMetricLine(line.replace(/\r?\n$/, '')) : undefined;
    if (parsed) metrics[parsed.name] = parsed.metric;
    else hash.update(line, 'latin1');
    start = end;
  }
  return { digest: hash.digest('hex'), metrics };
}
