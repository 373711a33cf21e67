/**
 * The event bus between controllers: PostgreSQL LISTEN/NOTIFY. A publish is delivered to this process's
 * subscribers at once, as the in-memory bus does, and announced to the other controllers by a NOTIFY
 * (notices.ts). A job change carries only the job's id, state and platform (payloads are capped at 8000
 * bytes, a job is not): a controller that hears of a change to a job someone there follows (or where
 * someone listens to every job change) re-reads the job from the shared store and delivers it as it now
 * is; so a subscriber may miss an intermediate state of a job changed elsewhere (it sees the newer one),
 * but never sees a job go back in time, and never gets one version of a job twice. A job queued elsewhere
 * is told to the scheduler by its platform alone, straight from the notice: waking a worker costs no read,
 * and jobs nobody here follows are never read at all. Progress, log and worker events travel whole in
 * their notice (a log chunk cut to fit: decision 0019) and are delivered from it, with no read.
 *
 * One dedicated connection LISTENs; it is re-established after a loss (PostgreSQL restarted, connection
 * killed), and then every job with a subscriber here is re-read, so a terminal state reached during the gap
 * still arrives; the same re-read runs periodically, for a NOTIFY lost with the controller that owed it.
 * What the re-read cannot give back is lost with the gap: progress, log and worker events (not stored: a
 * log follower sees the gap in the offsets), and, for a listener of every job change, the changes of jobs
 * nobody here follows (it would have to read them all).
 * NOTIFYs go out through a one-connection pool, batched: everything published while one batch is in flight
 * goes in the next, in order. See docs/decisions/0006-postgres.md.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { UnavailableError } from '../../core/errors.js';
import type { JobRecord } from '../../store/ports.js';
import { checkEvent } from '../bus-events.js';
import type { BusEvent, EventKind } from '../bus-events.js';
import type { EventBus, JobEventListener, JobListener, KindListener, PublishOptions, QueuedListener } from '../event-bus.js';
import { LocalSubscribers } from '../local-subscribers.js';
import { decodeNotice, encodeEvent, encodeJobNotice } from './notices.js';

export interface PostgresEventBusOptions {
  /** The database the controllers share (libpq URL). */
  url: string;
  /** Reads a job from the shared store: how a change announced by another controller becomes a JobRecord. */
  load: (id: string) => Promise<JobRecord | undefined>;
  /** NOTIFY channel; every controller of one deployment must use the same. Default {@link DEFAULT_EVENT_CHANNEL}. */
  channel?: string;
  /** First wait before reconnecting the listener; doubles up to `maxReconnectDelayMs`. */
  reconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /**
   * How often every job with a subscriber here is re-read anyway, in case its NOTIFY was lost (the
   * controller that changed it died between its commit and its NOTIFY), and the scheduler is told that
   * jobs of any platform may be queued (so a queued job whose notice was lost waits at most this long for
   * a waiting worker). 0: never. Default {@link DEFAULT_RESYNC_INTERVAL_MS}.
   */
  resyncIntervalMs?: number;
  /** How long opening a connection may take. Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  connectTimeoutMs?: number;
  /** How often the listening connection is checked (a dead peer may send no error). */
  healthCheckIntervalMs?: number;
  /** `application_name` of both connections, as pg_stat_activity shows them. Default `remex-events`. */
  applicationName?: string;
  /** Connection losses, failed NOTIFYs, failed re-reads and notices that are not valid events; the bus carries on. Default: ignored. */
  onError?: (err: Error) => void;
  /**
   * Told, for each job change another controller announced, how long after its publish the notice arrived
   * here (by the two controllers' clocks): the bus's lag between controllers.
   */
  onNoticeLag?: (ms: number) => void;
}

export const DEFAULT_EVENT_CHANNEL = 'remex_jobs';
export const DEFAULT_RECONNECT_DELAY_MS = 100;
export const DEFAULT_MAX_RECONNECT_DELAY_MS = 5_000;
export const DEFAULT_HEALTH_CHECK_INTERVAL_MS = 5_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_RESYNC_INTERVAL_MS = 5_000;
/** NOTIFYs held while the database is unreachable; the oldest go first beyond either bound. */
const MAX_OUTBOX = 10_000;
/** In characters (payloads are mostly ASCII; a log chunk's bytes are base64). */
const MAX_OUTBOX_CHARS = 16 * 1024 * 1024;
/** Versions remembered to suppress repeats; a job not seen for this many others may be delivered again. */
const MAX_REMEMBERED_VERSIONS = 10_000;

export class PostgresEventBus implements EventBus {
  private readonly local = new LocalSubscribers();
  private readonly queuedListeners = new Set<QueuedListener>();
  /** Tells this bus's own NOTIFYs, which come back to it, from other controllers'. */
  private readonly origin = randomUUID();
  private readonly channel: string;
  private readonly applicationName: string;
  private readonly publisher: pg.Pool;
  private readonly onError: (err: Error) => void;
  private readonly reconnectDelayMs: number;
  private readonly maxReconnectDelayMs: number;
  private readonly healthCheckIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private listener: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private listeningWaiters: Array<() => void> = [];
  private outbox: string[] = [];
  private outboxChars = 0;
  private flushing = false;
  private flushDone: Promise<void> | undefined;
  private flushRetryDelayMs = 0;
  /** Per job: a re-read in flight, and whether another notice came meanwhile (then one more read). */
  private readonly loading = new Map<string, { again: boolean }>();
  private readonly delivered = new Map<string, string>();
  private closed = false;

  private constructor(private readonly opts: PostgresEventBusOptions) {
    this.channel = opts.channel ?? DEFAULT_EVENT_CHANNEL;
    this.applicationName = opts.applicationName ?? 'remex-events';
    if (this.channel.length === 0 || Buffer.byteLength(this.channel) > 63) throw new RangeError(`not a valid channel name: ${JSON.stringify(this.channel)}`);
    this.onError = opts.onError ?? (() => undefined);
    this.reconnectDelayMs = opts.reconnectDelayMs ?? DEFAULT_RECONNECT_DELAY_MS;
    this.maxReconnectDelayMs = opts.maxReconnectDelayMs ?? DEFAULT_MAX_RECONNECT_DELAY_MS;
    this.healthCheckIntervalMs = opts.healthCheckIntervalMs ?? DEFAULT_HEALTH_CHECK_INTERVAL_MS;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.publisher = new pg.Pool({
      connectionString: opts.url,
      max: 1,
      application_name: this.applicationName,
      connectionTimeoutMillis: this.connectTimeoutMs,
      keepAlive: true,
    });
    this.publisher.on('error', (err) => this.onError(err));
  }

  /** Connects and LISTENs; resolves once events published by other controllers from now on will arrive. */
  static async start(opts: PostgresEventBusOptions): Promise<PostgresEventBus> {
    const bus = new PostgresEventBus(opts);
    try {
      await bus.connectListener();
    } catch (err) {
      await bus.close();
      throw new UnavailableError(`event bus cannot listen on PostgreSQL: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    bus.healthTimer = setInterval(() => bus.checkHealth(), bus.healthCheckIntervalMs);
    bus.healthTimer.unref();
    const resyncMs = opts.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    if (resyncMs > 0) {
      bus.resyncTimer = setInterval(() => {
        bus.resync();
        bus.announceQueued(null);
      }, resyncMs);
      bus.resyncTimer.unref();
    }
    return bus;
  }

  /** True while the listening connection is up. */
  get listening(): boolean {
    return this.listener !== undefined;
  }

  /** Resolves when the bus is listening: at once, or after the reconnection under way. */
  whenListening(): Promise<void> {
    if (this.listener || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.listeningWaiters.push(resolve));
  }

  publish(job: JobRecord, opts: PublishOptions = {}): void {
    if (this.closed) return;
    this.deliver(job, true);
    const waiting = job.state === 'queued' && !opts.workerWoken;
    const payload = encodeJobNotice({ o: this.origin, id: job.id, s: job.state, ...(waiting ? { p: job.platform } : {}), t: Date.now() });
    if (payload === undefined) {
      this.onError(new Error(`job id too long to announce to other controllers (${job.id.length} characters)`));
      return;
    }
    this.send([payload]);
  }

  publishEvent(event: BusEvent, opts: PublishOptions = {}): void {
    checkEvent(event);
    if (event.kind === 'job') return this.publish(event.job, opts);
    if (this.closed) return;
    this.local.deliver(event);
    const payloads = encodeEvent(this.origin, event);
    if (payloads === undefined) {
      this.onError(new Error(`${event.kind} event too large to announce to other controllers`));
      return;
    }
    this.send(payloads);
  }

  subscribe(jobId: string, listener: JobListener): () => void {
    return this.local.subscribe(jobId, listener);
  }

  subscribeJobEvents(jobId: string, listener: JobEventListener): () => void {
    return this.local.subscribeJobEvents(jobId, listener);
  }

  subscribeKind<K extends EventKind>(kind: K, listener: KindListener<K>): () => void {
    return this.local.subscribeKind(kind, listener);
  }

  subscribeAll(listener: JobListener): () => void {
    return this.local.subscribeAll(listener);
  }

  onQueuedElsewhere(listener: QueuedListener): () => void {
    this.queuedListeners.add(listener);
    return () => this.queuedListeners.delete(listener);
  }

  /** Sends what is still queued for the other controllers (best effort), then closes both connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    // Unless the database is failing (then the other controllers will re-read what they wait on when it is back).
    if (this.flushRetryDelayMs === 0) {
      await this.flushDone;
      await this.flush().catch(() => undefined);
    }
    this.closed = true;
    clearInterval(this.healthTimer);
    clearInterval(this.resyncTimer);
    for (const wake of this.listeningWaiters.splice(0)) wake();
    const listener = this.listener;
    this.listener = undefined;
    await Promise.all([listener?.end().catch(() => undefined), this.publisher.end().catch(() => undefined)]);
  }

  // ---- delivery ---------------------------------------------------------------------------------

  /** Calls the subscribers of this job (and of all jobs, when `published` here), unless they already had this very version. */
  private deliver(job: JobRecord, published: boolean): void {
    const version = versionOf(job);
    if (this.delivered.get(job.id) === version) return;
    this.delivered.delete(job.id); // re-inserted last: the map is oldest first
    this.delivered.set(job.id, version);
    if (this.delivered.size > MAX_REMEMBERED_VERSIONS) {
      const oldest = this.delivered.keys().next();
      if (!oldest.done) this.delivered.delete(oldest.value);
    }
    this.local.deliver({ kind: 'job', job }, published);
  }

  private onNotification(msg: pg.Notification): void {
    if (msg.channel !== this.channel || !msg.payload) return;
    const notice = decodeNotice(msg.payload);
    if (!notice || notice.origin === this.origin) return; // not ours, or of a later release
    if (notice.type === 'invalid') {
      this.onError(new Error(`ignored a ${notice.kind} notice that is not a valid event: ${notice.reason}`));
      return;
    }
    if (notice.type === 'event') return this.local.deliver(notice.event, false);
    if (typeof notice.sentAtMs === 'number') this.opts.onNoticeLag?.(Math.max(0, Date.now() - notice.sentAtMs));
    if (notice.state === 'queued' && typeof notice.platform === 'string') this.announceQueued(notice.platform);
    this.reread(notice.id);
  }

  /** Whether a change of this job made elsewhere is wanted here: someone follows the job, or every job change. */
  private follows(id: string): boolean {
    return this.local.wants(id) || this.local.wantsKind('job');
  }

  private announceQueued(platform: string | null): void {
    for (const listener of [...this.queuedListeners]) {
      try {
        listener(platform);
      } catch {
        // as for job listeners: one failing listener stops no other
      }
    }
  }

  /** Re-reads a job changed elsewhere and delivers it; notices arriving meanwhile cost one more read, not one each. */
  private reread(id: string): void {
    if (this.closed || !this.follows(id)) return;
    const inFlight = this.loading.get(id);
    if (inFlight) {
      inFlight.again = true;
      return;
    }
    const entry = { again: false };
    this.loading.set(id, entry);
    void (async () => {
      try {
        do {
          entry.again = false;
          const job = await this.opts.load(id).catch((err: unknown) => {
            this.onError(err instanceof Error ? err : new Error(String(err)));
            return undefined;
          });
          if (job && !this.closed) this.deliver(job, false);
        } while (entry.again && !this.closed);
      } finally {
        this.loading.delete(id);
      }
    })();
  }

  // ---- publishing -------------------------------------------------------------------------------

  /** Queues payloads for the next batch; beyond the outbox's bounds (the database is unreachable) the oldest go. */
  private send(payloads: string[]): void {
    for (const payload of payloads) {
      this.outbox.push(payload);
      this.outboxChars += payload.length;
    }
    this.trimOutbox();
    this.scheduleFlush(0);
  }

  private trimOutbox(): void {
    let drop = Math.max(0, this.outbox.length - MAX_OUTBOX);
    let chars = this.outboxChars;
    for (let i = 0; i < drop; i++) chars -= (this.outbox[i] as string).length;
    while (chars > MAX_OUTBOX_CHARS && drop < this.outbox.length) chars -= (this.outbox[drop++] as string).length;
    if (drop === 0) return;
    this.outbox.splice(0, drop);
    this.outboxChars = chars;
  }

  private scheduleFlush(delayMs: number): void {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    this.flushDone = new Promise<void>((resolve) => {
      const run = () =>
        void this.flush()
          .then(
            () => (this.flushRetryDelayMs = 0),
            (err: unknown) => {
              this.onError(err instanceof Error ? err : new Error(String(err)));
              this.flushRetryDelayMs = Math.min(Math.max(this.flushRetryDelayMs * 2, this.reconnectDelayMs), this.maxReconnectDelayMs);
            },
          )
          .finally(() => {
            this.flushing = false;
            resolve();
            if (this.outbox.length > 0) this.scheduleFlush(this.flushRetryDelayMs);
          });
      // setImmediate rather than now: every publish of this turn of the event loop goes in one statement.
      if (delayMs > 0) setTimeout(run, delayMs).unref();
      else setImmediate(run);
    });
  }

  /** One statement, one round trip, for everything queued; kept for the next try when it fails. */
  private async flush(): Promise<void> {
    if (this.outbox.length === 0 || this.closed) return;
    const batch = this.outbox;
    this.outbox = [];
    this.outboxChars = 0;
    try {
      await this.publisher.query({
        // Named: the connection parses and plans it once.
        name: 'remex_notify_batch',
        text: 'SELECT pg_notify($1, payload) FROM unnest($2::text[]) WITH ORDINALITY AS n(payload, i) ORDER BY i',
        values: [this.channel, batch],
      });
    } catch (err) {
      this.outbox = [...batch, ...this.outbox];
      this.outboxChars = this.outbox.reduce((sum, payload) => sum + payload.length, 0);
      this.trimOutbox();
      throw err;
    }
  }

  // ---- the listening connection -----------------------------------------------------------------

  private async connectListener(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      keepAlive: true,
      application_name: this.applicationName,
      connectionTimeoutMillis: this.connectTimeoutMs,
    });
    client.on('notification', (msg) => this.onNotification(msg));
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.channel)}`);
    } catch (err) {
      client.removeAllListeners('end');
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.listener = client;
    for (const wake of this.listeningWaiters.splice(0)) wake();
  }

  private lost(client: pg.Client, err?: Error): void {
    if (this.listener !== client) return;
    this.listener = undefined;
    if (err) this.onError(err);
    client.removeAllListeners('notification');
    client.on('error', () => undefined);
    void client.end().catch(() => undefined);
    if (!this.closed) this.reconnect();
  }

  private reconnect(): void {
    if (this.connecting || this.closed) return;
    this.connecting = (async () => {
      let delayMs = this.reconnectDelayMs;
      while (!this.closed) {
        try {
          await this.connectListener();
          break;
        } catch (err) {
          this.onError(err instanceof Error ? err : new Error(String(err)));
          await new Promise((r) => setTimeout(r, delayMs).unref());
          delayMs = Math.min(delayMs * 2, this.maxReconnectDelayMs);
        }
      }
    })().finally(() => {
      this.connecting = undefined;
      if (this.closed) return;
      if (!this.listener) return this.reconnect(); // lost again before this loop ended
      // Changes announced while nobody listened are lost: read again every job someone here waits on, and
      // let the scheduler look for queued jobs of any platform.
      this.resync();
      this.announceQueued(null);
    });
  }

  /** Re-reads every job with a subscriber here; only versions not yet delivered reach them. */
  private resync(): void {
    for (const id of [...this.local.jobIds()]) this.reread(id);
  }

  private checkHealth(): void {
    const client = this.listener;
    if (!client) return;
    let answered = false;
    const timer = setTimeout(() => {
      if (!answered) this.lost(client, new Error('event bus listener did not answer a health check'));
    }, this.healthCheckIntervalMs);
    timer.unref();
    void client.query('SELECT 1').then(
      () => {
        answered = true;
        clearTimeout(timer);
      },
      (err: unknown) => {
        answered = true;
        clearTimeout(timer);
        this.lost(client, err instanceof Error ? err : new Error(String(err)));
      },
    );
  }
}

/** What tells two versions of a job apart for subscribers: every field a transition changes. */
function versionOf(job: JobRecord): string {
  return JSON.stringify([job.state, job.attempt, job.leaseOwner, job.cancelRequested, job.queuedAtMs, job.completedAtMs]);
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
