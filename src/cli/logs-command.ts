/**
 * `remex logs ID [--follow] [--stream stdout|stderr]`: a job's output, each line tagged with its stream
 * (`stdout| …`, `stderr| …`) — what is stored first, then, with --follow, the lines as they come until the
 * job ends. A line is printed once it is whole (the last one at the end); a stream cut at its ceiling says
 * so on stderr. Exit status 0, or the CLI's error codes (an unknown job: not found).
 */
import type { RemexClient } from '../client/remex-client.js';

export interface LogsOptions {
  follow: boolean;
  stream?: 'stdout' | 'stderr';
}

export async function logsCommand(client: RemexClient, id: string, opts: LogsOptions, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const partial = new Map<string, string>();
  const flush = (stream: string): void => {
    const rest = partial.get(stream);
    if (rest) out.write(`${stream}| ${rest}\n`);
    partial.delete(stream);
  };
  let attempt = 0;
  for await (const frame of client.logs(id, { follow: opts.follow, ...(opts.stream ? { stream: opts.stream } : {}) })) {
    if (frame.event === 'log') {
      if (frame.attempt !== attempt) {
        // The job runs again: what the earlier run left unfinished ends here.
        for (const stream of [...partial.keys()]) flush(stream);
        if (attempt !== 0) process.stderr.write(`remex: run ${frame.attempt} of ${id} starts\n`);
        attempt = frame.attempt;
      }
      const lines = ((partial.get(frame.stream) ?? '') + frame.data).split('\n');
      partial.set(frame.stream, lines.pop() as string);
      if (lines.length > 0) out.write(lines.map((line) => `${frame.stream}| ${line}\n`).join(''));
      continue;
    }
    for (const stream of [...partial.keys()]) flush(stream);
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = frame[stream];
      if (s?.truncated) process.stderr.write(`remex: ${stream} truncated: ${s.keptBytes} bytes kept of ${s.totalBytes} written\n`);
    }
  }
  return 0;
}
