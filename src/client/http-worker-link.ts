/** The worker protocol (WorkerLink port) carried over HTTP to a remex server; see api/http/worker-routes.ts. */
import type { Completion, HeartbeatReply, Lease, WorkerLink, WorkerRegistration, WorkerSession } from '../scheduler/worker-link.js';
import type { RemexClient } from './remex-client.js';

export class HttpWorkerLink implements WorkerLink {
  constructor(private readonly client: RemexClient) {}

  register(reg: WorkerRegistration): Promise<WorkerSession> {
    return this.client.request('POST', '/v1/workers', reg);
  }

  async lease(workerId: string, max: number, waitMs: number, signal?: AbortSignal): Promise<Lease[]> {
    try {
      const reply = await this.client.request<{ leases: Lease[] }>('POST', `/v1/workers/${encodeURIComponent(workerId)}/lease`, { max, waitMs }, signal ? { signal } : {});
      return reply.leases;
    } catch (err) {
      if (signal?.aborted) return [];
      throw err;
    }
  }

  heartbeat(workerId: string, draining: boolean): Promise<HeartbeatReply> {
    return this.client.request('POST', `/v1/workers/${encodeURIComponent(workerId)}/heartbeat`, { draining });
  }

  async complete(workerId: string, completion: Completion): Promise<void> {
    await this.client.request('POST', `/v1/workers/${encodeURIComponent(workerId)}/complete`, completion);
  }

  async unregister(workerId: string): Promise<void> {
    await this.client.request('DELETE', `/v1/workers/${encodeURIComponent(workerId)}`);
  }
}
