/**
 * The worker protocol (WorkerLink port) carried over HTTP to a remex server; see api/http/worker-routes.ts.
 *
 * With several controllers, the client moves to the next one when the current one cannot be reached.
 * The link then registers again there, under the same worker id and with the same offer, before its next
 * call, so leases, heartbeats and completions carry on: with a shared job store the leases this worker
 * holds are valid on every controller, and their results commit wherever the worker now is.
 */
import { isRemexError } from '../core/errors.js';
import { completeThenLease } from '../scheduler/worker-link.js';
import type { CompleteAndLeaseReply, Completion, HeartbeatReply, Lease, LogAck, LogChunk, WorkerLink, WorkerRegistration, WorkerSession } from '../scheduler/worker-link.js';
import type { HeldLease } from '../store/ports.js';
import type { RemexClient } from './remex-client.js';

/** Calls other than the lease long-poll answer quickly; a controller silent this long counts as gone. */
const CALL_TIMEOUT_MS = 15_000;

export class HttpWorkerLink implements WorkerLink {
  private registration: WorkerRegistration | undefined;
  /** `client.serverChanges` when the registration was last made; differs once the client moved. */
  private registeredAt = -1;
  private reregistering: Promise<void> | undefined;
  /** What the controller last registered with offers; an older one offers none. */
  private features = new Set<string>();

  constructor(private readonly client: RemexClient) {}

  async register(reg: WorkerRegistration): Promise<WorkerSession> {
    const send = (body: WorkerRegistration): Promise<WorkerSession> =>
      this.client.request<WorkerSession>('POST', '/v1/workers', body, { idempotent: true, timeoutMs: CALL_TIMEOUT_MS });
    const session = await send(reg).catch((err: unknown) => {
      // A controller older than prices in registrations refuses the field by name: register without it there
      // (its jobs are still priced, by the runs' reports).
      if (reg.pricePerHour === undefined || !isRemexError(err, 'INVALID_ARGUMENT') || !/Unrecognized key.*pricePerHour/.test(err.message)) throw err;
      const { pricePerHour: _unknownThere, ...older } = reg;
      return send(older);
    });
    this.features = new Set(session.features ?? []);
    this.registration = { ...reg, id: session.workerId };
    this.registeredAt = this.client.serverChanges;
    return session;
  }

  lease(workerId: string, max: number, waitMs: number, signal?: AbortSignal): Promise<Lease[]> {
    return this.session(async () => {
      try {
        const reply = await this.client.request<{ leases: Lease[] }>('POST', `/v1/workers/${encodeURIComponent(workerId)}/lease`, { max, waitMs }, {
          idempotent: true,
          timeoutMs: waitMs + CALL_TIMEOUT_MS,
          ...(signal ? { signal } : {}),
        });
        return reply.leases;
      } catch (err) {
        if (signal?.aborted) return [];
        throw err;
      }
    });
  }

  completeAndLease(workerId: string, completions: readonly Completion[], max: number, waitMs: number, signal?: AbortSignal): Promise<CompleteAndLeaseReply> {
    // A controller older than the call (a rolling upgrade that reached the workers first): the same, in
    // the calls it knows.
    if (!this.features.has('complete-and-lease')) return completeThenLease(this, workerId, { completions, max, waitMs, signal });
    return this.session(async () => {
      try {
        // Idempotent: a completion commits once; sent again, it settles as stale.
        return await this.client.request<CompleteAndLeaseReply>('POST', `/v1/workers/${encodeURIComponent(workerId)}/lease`, { max, waitMs, completions }, {
          idempotent: true,
          timeoutMs: waitMs + CALL_TIMEOUT_MS,
          ...(signal ? { signal } : {}),
        });
      } catch (err) {
        // Aborted with nothing sent (no completions): as `lease`, an empty answer. With completions the
        // caller must learn they were not settled.
        if (signal?.aborted && completions.length === 0) return { settled: [], leases: [] };
        throw err;
      }
    });
  }

  heartbeat(workerId: string, draining: boolean, held?: readonly HeldLease[]): Promise<HeartbeatReply> {
    const body = held ? { draining, held } : { draining };
    return this.session(() =>
      this.client.request<HeartbeatReply>('POST', `/v1/workers/${encodeURIComponent(workerId)}/heartbeat`, body, { idempotent: true, timeoutMs: CALL_TIMEOUT_MS }),
    );
  }

  complete(workerId: string, completion: Completion): Promise<void> {
    return this.session(async () => {
      await this.client.request('POST', `/v1/workers/${encodeURIComponent(workerId)}/complete`, completion, { idempotent: true, timeoutMs: CALL_TIMEOUT_MS });
    });
  }

  appendLogs(workerId: string, chunks: readonly LogChunk[]): Promise<LogAck[]> {
    const body = { chunks: chunks.map((c) => ({ ...c, data: Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength).toString('base64') })) };
    return this.session(async () => {
      // Idempotent by offset: a chunk sent again is stored once.
      const reply = await this.client.request<{ stored: LogAck[] }>('POST', `/v1/workers/${encodeURIComponent(workerId)}/logs`, body, { idempotent: true, timeoutMs: CALL_TIMEOUT_MS });
      return reply.stored;
    });
  }

  async unregister(workerId: string): Promise<void> {
    await this.client.request('DELETE', `/v1/workers/${encodeURIComponent(workerId)}`, undefined, { timeoutMs: CALL_TIMEOUT_MS });
  }

  /**
   * Runs a call on a controller that knows this worker: registers again first when the client has moved
   * since the last registration, and once more if the call moved during its course and the new
   * controller does not know the worker (NOT_FOUND).
   */
  private async session<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      await this.followClient();
      const before = this.client.serverChanges;
      try {
        return await call();
      } catch (err) {
        if (attempt === 0 && isRemexError(err, 'NOT_FOUND') && this.client.serverChanges !== before) continue;
        throw err;
      }
    }
  }

  private async followClient(): Promise<void> {
    while (this.registration && this.registeredAt !== this.client.serverChanges) {
      this.reregistering ??= this.register(this.registration)
        .then(() => undefined)
        .finally(() => (this.reregistering = undefined));
      await this.reregistering;
    }
  }
}
