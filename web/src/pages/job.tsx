/**
 * One execution: its command, state and timeline, a progress bar and a live log tail while it runs (the
 * `follow` frames), its outputs to download, what it cost and the machine it ran on; cancel.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, download, get, post } from '../api';
import { follow, live } from '../live';
import type { ExecutionView, Progress } from '../model';
import { bytes, labelText, ms, TERMINAL, time } from '../model';

/** The log tail keeps this many characters per stream (the whole output is a download away). */
const TAIL_CHARS = 64 * 1024;

interface LogTail {
  stdout: string;
  stderr: string;
}

export function JobPage({ id }: { id: string }) {
  const [job, setCurrent] = useState<ExecutionView | null>(null);
  // A view read before the result's frame arrived (a GET, cancel's answer) must not take the result back.
  const setJob = (next: ExecutionView) => setCurrent((prev) => (prev?.id === next.id && TERMINAL.has(prev.state) && !TERMINAL.has(next.state) ? prev : next));
  const [progress, setProgress] = useState<Progress | null>(null);
  const [tail, setTail] = useState<LogTail>({ stdout: '', stderr: '' });
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stopped = false;
    const load = () =>
      get<ExecutionView>(`/v1/executions/${encodeURIComponent(id)}`).then(
        (v) => !stopped && (setJob(v), v.progress && setProgress(v.progress)),
        (err: unknown) => !stopped && setError(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)),
      );
    void load();
    const stop = live.listen((f) => {
      if (f.id !== id) return;
      if (f.event === 'state') void load();
      else if (f.event === 'progress') setProgress({ percent: f.percent as number, ...(typeof f.message === 'string' ? { message: f.message } : {}) });
      else if (f.event === 'log') {
        const stream = f.stream === 'stderr' ? 'stderr' : 'stdout';
        setTail((t) => ({ ...t, [stream]: (t[stream] + String(f.data)).slice(-TAIL_CHARS) }));
      } else if (f.event === undefined && typeof f.state === 'string') {
        // The result, as `subscribe` sends it: the follow is over.
        const v = f as unknown as ExecutionView;
        setJob(v);
        if (v.progress) setProgress(v.progress);
      }
    });
    const unfollow = follow(id);
    return () => {
      stopped = true;
      stop();
      unfollow();
    };
  }, [id]);

  if (error) return <p class="error">{error}</p>;
  if (!job) return <p class="muted">loading…</p>;
  const done = TERMINAL.has(job.state);
  const cancel = () => post<ExecutionView>(`/v1/executions/${encodeURIComponent(id)}/cancel`).then(setJob, (err: unknown) => setError(String(err)));
  const stdout = done && !tail.stdout ? job.stdout.map((l) => l.text).join('\n') : tail.stdout;
  const stderr = done && !tail.stderr ? job.stderr.map((l) => l.text).join('\n') : tail.stderr;
  const created = Date.parse(job.createdAt);

  return (
    <section id="job" data-state={job.state}>
      <h1>
        {job.name ?? 'execution'} <span class={`state ${job.state}`}>{job.state}</span>
        {!done && (
          <button id="cancel" class="danger" onClick={() => void cancel()}>
            Cancel
          </button>
        )}
      </h1>
      <dl class="facts">
        <dt>id</dt>
        <dd>{job.id}</dd>
        <dt>command</dt>
        <dd>
          <code>{(job.arguments ?? []).join(' ')}</code>
        </dd>
        <dt>platform</dt>
        <dd>
          {job.platform}
          {job.emulated === null ? '' : job.emulated ? ' (emulated)' : ' (native)'}
        </dd>
        <dt>labels</dt>
        <dd>{labelText(job.labels) || '—'}</dd>
        <dt>attempt</dt>
        <dd>
          {job.attempt}
          {job.noRetry ? ' (no retry)' : ''}
          {job.cached ? ' (cached)' : ''}
        </dd>
        <dt>worker</dt>
        <dd>{job.worker ?? '—'}</dd>
        <dt>created / started / ended</dt>
        <dd>
          {time(job.createdAt)} / {time(job.startedAt)} / {time(job.completedAt)}
        </dd>
        <dt>queued / ran</dt>
        <dd>
          {ms(job.queueTimeMs)} / {ms(job.execTime)}
        </dd>
        <dt>exit</dt>
        <dd>
          {job.code ?? '—'}
          {job.signal ? ` (${job.signal})` : ''}
          {job.limitExceeded ? ` — ${job.limitExceeded} limit` : ''}
          {job.failure ? ` — ${job.failure.code}: ${job.failure.message}` : ''}
        </dd>
        <dt>cost</dt>
        <dd id="cost">{job.cost === null ? '—' : job.cost.toFixed(6)}</dd>
        <dt>ran on</dt>
        <dd id="host">
          {job.host
            ? `${job.host.cpuModel}, ${job.host.cores} cores, ${bytes(job.host.memoryBytes)}, ${job.host.kernel}, ${job.host.slots} slots${job.host.pricePerHour === null ? '' : `, ${job.host.pricePerHour}/h`}`
            : '—'}
        </dd>
        {job.cpuTimeMs !== null && (
          <>
            <dt>CPU / peak memory</dt>
            <dd>
              {ms(job.cpuTimeMs)} / {job.maxRssKb === null ? '—' : bytes(job.maxRssKb * 1024)}
            </dd>
          </>
        )}
      </dl>

      {progress && (
        <div class="progress">
          <progress id="progress" max={100} value={progress.percent} data-percent={progress.percent} />
          <span>
            {progress.percent}% {progress.message ?? ''}
          </span>
        </div>
      )}

      {job.timeline && job.timeline.length > 0 && (
        <>
          <h2>Timeline</h2>
          <table id="timeline">
            <tbody>
              {job.timeline.map((t) => (
                <tr key={`${t.phase}-${t.atMs}`}>
                  <td>{t.phase}</td>
                  <td>+{ms(t.atMs - created)}</td>
                  <td>{t.durationMs === undefined ? '' : ms(t.durationMs)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}

      <h2>{done ? 'Output' : 'Log (live)'}</h2>
      <pre id="stdout" class="log">{stdout || (done ? '(no output)' : '(waiting for output)')}</pre>
      {stderr && (
        <pre id="stderr" class="log err">
          {stderr}
        </pre>
      )}

      {job.output && (
        <>
          <h2>Downloads</h2>
          <ul id="downloads">
            <li>
              <button class="link" onClick={() => void download(job.output!.stdout.digest.hash, `${job.id}.stdout`)}>
                stdout
              </button>{' '}
              {bytes(job.output.stdout.totalBytes)}
            </li>
            <li>
              <button class="link" onClick={() => void download(job.output!.stderr.digest.hash, `${job.id}.stderr`)}>
                stderr
              </button>{' '}
              {bytes(job.output.stderr.totalBytes)}
            </li>
            {job.outputFiles.map((f) => (
              <li key={f.path}>
                <button class="link" onClick={() => void download(f.digest.hash, f.path.split('/').pop() ?? f.path)}>
                  {f.path}
                </button>{' '}
                {bytes(f.digest.sizeBytes)}
              </li>
            ))}
            {job.outputDirectories.map((d) => (
              <li key={d.path}>
                <button class="link" onClick={() => void download(d.treeDigest.hash, `${d.path.split('/').pop() ?? d.path}.tree`)}>
                  {d.path}/
                </button>{' '}
                (REAPI Tree; <code>remex collect</code> unpacks it)
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
