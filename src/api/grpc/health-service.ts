/**
 * grpc.health.v1.Health: SERVING for the server as a whole ('') and for each REAPI service it serves,
 * until close() flips every watcher to NOT_SERVING (shutdown).
 */
import { NotFoundError } from '../../core/errors.js';
import type { CallContext, ResponseSink } from './handlers.js';
import type { HealthCheckRequestOut, HealthCheckResponse } from './messages.js';

export class HealthService {
  private serving = true;
  private readonly watchers = new Set<() => void>();

  constructor(private readonly services: readonly string[]) {}

  async check(req: HealthCheckRequestOut): Promise<HealthCheckResponse> {
    if (!this.knows(req.service)) throw new NotFoundError(`unknown service ${JSON.stringify(req.service)}`);
    return { status: this.serving ? 'SERVING' : 'NOT_SERVING' };
  }

  /** Sends the status now and again when it changes, until the client goes away. */
  async watch(req: HealthCheckRequestOut, sink: ResponseSink<HealthCheckResponse>, ctx: CallContext): Promise<void> {
    if (!this.knows(req.service)) {
      await sink.send({ status: 'SERVICE_UNKNOWN' });
    } else {
      await sink.send({ status: this.serving ? 'SERVING' : 'NOT_SERVING' });
    }
    if (!this.serving) return;
    await new Promise<void>((resolve) => {
      const stop = () => {
        this.watchers.delete(stop);
        ctx.signal.removeEventListener('abort', stop);
        resolve();
      };
      this.watchers.add(stop);
      ctx.signal.addEventListener('abort', stop, { once: true });
    });
    if (!ctx.signal.aborted && this.knows(req.service)) await sink.send({ status: 'NOT_SERVING' });
  }

  close(): void {
    this.serving = false;
    for (const stop of [...this.watchers]) stop();
  }

  private knows(service: string): boolean {
    return service === '' || this.services.includes(service);
  }
}
