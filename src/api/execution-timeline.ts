/**
 * Where an execution's time went: the phases it reached, in order, each with the moment it began and, once
 * the next began, how long it lasted. The controller's marks (queued, leased, completed) come from the job
 * row; the worker's (staged, running, outputs_stored) from its run report, by the worker's clock — a mark
 * that a skewed clock would put before the one preceding it is shown at that one instead, so the timeline
 * is always ordered. A result from the action cache ran nothing now: queued, then completed.
 */
import { isTerminal } from '../core/model.js';
import type { JobRecord } from '../store/ports.js';

export const TIMELINE_PHASES = ['queued', 'leased', 'staged', 'running', 'outputs_stored', 'completed'] as const;
export type TimelinePhase = (typeof TIMELINE_PHASES)[number];

export interface TimelineEntry {
  phase: TimelinePhase;
  /** When the phase began, epoch milliseconds. */
  atMs: number;
  /** How long it lasted; absent for the phase the execution is in (or ended in). */
  durationMs?: number;
}

export function executionTimeline(job: JobRecord): TimelineEntry[] {
  const marks: Array<[TimelinePhase, number | null | undefined]> = [['queued', job.createdAtMs]];
  if (!job.cached) {
    // A requeued job's queued phase runs from its creation to its last lease (earlier attempts within it).
    marks.push(['leased', job.state === 'queued' ? null : job.startedAtMs]);
    const times = job.result?.times;
    marks.push(['staged', times?.stagedAtMs], ['running', times?.programStartedAtMs], ['outputs_stored', times?.outputsStoredAtMs]);
  }
  if (isTerminal(job.state)) marks.push(['completed', job.completedAtMs]);
  const timeline: TimelineEntry[] = [];
  for (const [phase, atMs] of marks) {
    if (atMs === null || atMs === undefined) continue;
    const previous = timeline[timeline.length - 1];
    const at = previous ? Math.max(previous.atMs, atMs) : atMs;
    if (previous) previous.durationMs = at - previous.atMs;
    timeline.push({ phase, atMs: at });
  }
  return timeline;
}
