/**
 * The **WorkerProvider** port: how the autoscaler gets workers started and stopped somewhere. Adapters:
 * `local-process` (real `remex worker` processes on this host) and `command` (the operator's commands, for
 * EC2, GCE, Nomad or anything else). A provider never decides and never kills a worker that runs a job:
 * scale-in is a drain order first (the worker exits once idle), and `release` only tidies up after it.
 */
export interface ScaleOutRequest {
  pool: string;
  /** Workers to start. A provider may start fewer or more: registrations are what counts. */
  count: number;
  platforms: readonly string[];
  slotsPerWorker: number;
  /** Labels each worker must register with (`--label`), the pool's own among them. */
  labels: Readonly<Record<string, string>>;
  /** The controllers the workers report to (`remex worker --server`). */
  servers: readonly string[];
}

export interface ProvidedWorker {
  /** The provider's id of the machine or process; the worker registers with it (`--instance-id`). */
  instanceId: string;
}

export interface ReleaseRequest {
  pool: string;
  /** Instances whose worker has drained and left, or never registered in time. */
  instanceIds: readonly string[];
}

export interface WorkerProvider {
  readonly kind: string;
  /** Starts workers; resolves with those it says it started (possibly none: failures are logged, never thrown). */
  scaleOut(req: ScaleOutRequest): Promise<ProvidedWorker[]>;
  /** Gives back instances that no longer run a worker (drained and gone, or never registered). Never throws. */
  release(req: ReleaseRequest): Promise<void>;
  /** Stops what it started (drains first), at server shutdown. */
  close(): Promise<void>;
}
