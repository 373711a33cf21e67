/**
 * The fleet at a glance: each platform (native or emulated, workers, slots, queue) and the last hour's
 * throughput, queue depth and latency percentiles, pushed by the server as each 5 s bucket closes.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { get } from '../api';
import { Chart } from '../chart';
import { live, watch } from '../live';
import type { FleetStatus, PlatformStatus, StatsPoint } from '../model';

const WINDOW_MS = 60 * 60 * 1000;
const REFRESH_MS = 5000;

export function OverviewPage() {
  const [status, setStatus] = useState<{ platforms: PlatformStatus[]; fleet?: FleetStatus } | null>(null);
  const [points, setPoints] = useState<StatsPoint[]>([]);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    let pending = false;
    const refresh = () => {
      if (pending) return;
      pending = true;
      get<{ platforms: PlatformStatus[]; fleet?: FleetStatus }>('/v1/platforms').then(
        (s) => (pending = false, !stopped && (setStatus(s), setError(null))),
        (err: unknown) => (pending = false, setError(String(err))),
      );
    };
    refresh();
    const timer = window.setInterval(refresh, REFRESH_MS);
    // Job and worker changes move the queue and the slots: read again, at most once a second.
    let throttle: number | undefined;
    const stopListen = live.listen((frame) => {
      if (frame.event === 'stats') {
        const incoming = frame.points as StatsPoint[];
        setPoints((old) => {
          const cutoff = Date.now() - WINDOW_MS;
          return [...old, ...incoming].filter((p) => p.atMs >= cutoff);
        });
      } else if ((frame.event === 'jobs' || frame.event === 'worker') && throttle === undefined) {
        throttle = window.setTimeout(() => ((throttle = undefined), refresh()), 1000);
      }
    });
    const unwatch = [watch('stats'), watch('jobs'), watch('workers')];
    return () => {
      stopped = true;
      window.clearInterval(timer);
      window.clearTimeout(throttle);
      stopListen();
      for (const u of unwatch) u();
    };
  }, []);

  const series = useMemo(() => {
    const x = points.map((p) => p.atMs / 1000);
    return {
      throughput: [x, points.map((p) => p.throughputPerS)] as uPlot.AlignedData,
      queue: [x, points.map((p) => p.queued), points.map((p) => p.running)] as uPlot.AlignedData,
      latency: [x, points.map((p) => p.p50Ms), points.map((p) => p.p95Ms), points.map((p) => p.p99Ms)] as uPlot.AlignedData,
    };
  }, [points]);

  const fleet = status?.fleet;
  return (
    <section>
      <h1>Overview</h1>
      {error && <p class="error">{error}</p>}
      {fleet && (
        <p id="fleet">
          {fleet.workers} workers ({fleet.drainingWorkers} draining), {fleet.freeSlots}/{fleet.slots} slots free, {fleet.queued} queued,{' '}
          {fleet.running} running
        </p>
      )}
      <table id="platforms">
        <thead>
          <tr>
            <th>platform</th>
            <th>how</th>
            <th>workers</th>
            <th>slots free</th>
            <th>queued</th>
            <th>running</th>
          </tr>
        </thead>
        <tbody>
          {status?.platforms.map((p) => (
            <tr key={p.platform} data-platform={p.platform}>
              <td>{p.platform}</td>
              <td>{p.emulated ? 'emulated' : 'native'}</td>
              <td>{p.workers}</td>
              <td>
                {p.freeSlots}/{p.slots}
              </td>
              <td>{p.queued}</td>
              <td>{p.running}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="charts" data-points={points.length}>
        <Chart title="Throughput" unit="executions/s" series={[{ label: 'finished', stroke: '#2a7' }]} data={series.throughput} />
        <Chart
          title="Queue"
          unit="jobs"
          series={[
            { label: 'queued', stroke: '#c72' },
            { label: 'running', stroke: '#27c' },
          ]}
          data={series.queue}
        />
        <Chart
          title="Latency (submit to result)"
          unit="ms"
          series={[
            { label: 'p50', stroke: '#27c' },
            { label: 'p95', stroke: '#c72' },
            { label: 'p99', stroke: '#c33' },
          ]}
          data={series.latency}
        />
      </div>
    </section>
  );
}
