/**
 * Small blobs of the filesystem CAS, kept as rows of one SQLite database (`<root>/small-blobs.sqlite`)
 * instead of one file each. See docs/decisions/0014-small-blobs-packed.md: most blobs of a build are a few
 * hundred bytes (Commands, Directories, sources, objects, stdout), and a file per blob costs an inode, a
 * temporary name, a rename and a handful of thread-pool round trips, where a row is one statement.
 *
 * The pack only stores and finds bytes by hash; verification is the caller's (FsBlobStore hashes what it
 * stores and what it serves). Durability follows the store's fsync option: with it each insert is durable
 * when it returns (WAL, synchronous=FULL); without it (synchronous=NORMAL) a process crash loses nothing
 * and a power loss may lose the latest rows, which then read as missing, as a forgotten rename does.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** Blobs up to this size go to the pack; larger ones stay files (streamed, hard-linked into run directories). */
export const PACKED_MAX_BYTES = 64 * 1024;

export const PACK_FILE = 'small-blobs.sqlite';

/** Rows whose presence and size a pack remembers (see {@link SmallBlobPack}); about 100 bytes each. */
const KNOWN_ROWS_MAX = 65_536;

export interface SmallBlobPackOptions {
  /** The CAS root; the database is `<root>/small-blobs.sqlite`, created on first use. */
  root: string;
  fsync: boolean;
  /**
   * Whether the root may hold small blobs as files, written by a version before the pack: recorded when
   * the database is created (true for a root that already had blobs), read back from it afterwards.
   */
  smallFilesBefore: boolean;
}

/**
 * Presence checks (action-cache hits, FindMissingBlobs, the check before every put) are answered from
 * memory for rows this pack has stored or found: one `PRAGMA data_version` instead of a query (~2 µs
 * against ~12–17 µs). data_version moves whenever another connection commits to the database, and the
 * remembered rows are then forgotten, so a row deleted or changed behind this pack's back — by another
 * process, say — is looked up afresh at the next check, as before.
 */
export class SmallBlobPack {
  private db: Database.Database | undefined;
  /** Size by hash of rows known to exist, valid while the database's data_version is {@link knownVersion}. */
  private readonly known = new Map<string, number>();
  private knownVersion: unknown;
  private statements:
    | {
        dataVersion: Database.Statement<[], number>;
        size: Database.Statement<[string], { size: number }>;
        sizes: Database.Statement<[string], { hash: string; size: number }>;
        data: Database.Statement<[string], { data: Buffer }>;
        insert: Database.Statement<[string, Buffer]>;
        remove: Database.Statement<[string]>;
        all: Database.Statement<[], { hash: string; size: number }>;
      }
    | undefined;
  private closed = false;
  private legacyFiles = true;

  constructor(private readonly opts: SmallBlobPackOptions) {}

  /** Size of the row stored under `hash`, or undefined. */
  sizeOf(hash: string): number | undefined {
    const known = this.knownRows().get(hash);
    if (known !== undefined) return known;
    const size = this.prepared().size.get(hash)?.size;
    if (size !== undefined) this.remember(hash, size);
    return size;
  }

  /** Sizes of those of `hashes` stored here, by hash: one statement for those not known already. */
  sizesOf(hashes: readonly string[]): Map<string, number> {
    const known = this.knownRows();
    const sizes = new Map<string, number>();
    const unknown: string[] = [];
    for (const hash of hashes) {
      const size = known.get(hash);
      if (size === undefined) unknown.push(hash);
      else sizes.set(hash, size);
    }
    if (unknown.length === 0) return sizes;
    for (const row of this.prepared().sizes.all(JSON.stringify(unknown))) {
      sizes.set(row.hash, row.size);
      this.remember(row.hash, row.size);
    }
    return sizes;
  }

  /** Whether small blobs may also be files in this root (see {@link SmallBlobPackOptions.smallFilesBefore}). */
  get smallFilesPossible(): boolean {
    this.prepared();
    return this.legacyFiles;
  }

  /** The bytes stored under `hash`, or undefined. */
  get(hash: string): Buffer | undefined {
    return this.prepared().data.get(hash)?.data;
  }

  /** Stores `data` (verified by the caller) under `hash`, replacing whatever row was there. */
  put(hash: string, data: Uint8Array): void {
    // Brought up to date first, so what is remembered below is not forgotten for a commit made before it.
    this.knownRows();
    // better-sqlite3 binds Buffers (a view, no copy), not other Uint8Arrays.
    this.prepared().insert.run(hash, Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    this.remember(hash, data.byteLength);
  }

  /** Every row's hash and size, for the store's usage accounting (reads only the record headers). */
  *allSizes(): Generator<{ hash: string; size: number }> {
    yield* this.prepared().all.iterate();
  }

  delete(hash: string): void {
    this.known.delete(hash);
    this.prepared().remove.run(hash);
  }

  close(): void {
    this.closed = true;
    this.known.clear();
    this.db?.close();
    this.db = undefined;
    this.statements = undefined;
  }

  /** The rows known to exist, forgotten first if another connection has committed since they were learnt. */
  private knownRows(): Map<string, number> {
    const version = this.prepared().dataVersion.get();
    if (version !== this.knownVersion) {
      this.known.clear();
      this.knownVersion = version;
    }
    return this.known;
  }

  private remember(hash: string, size: number): void {
    if (this.known.size >= KNOWN_ROWS_MAX) {
      const oldest = this.known.keys().next();
      if (!oldest.done) this.known.delete(oldest.value);
    }
    this.known.set(hash, size);
  }

  private prepared(): NonNullable<SmallBlobPack['statements']> {
    if (this.statements) return this.statements;
    if (this.closed) throw new Error('the small-blob pack is closed');
    mkdirSync(this.opts.root, { recursive: true });
    const db = new Database(join(this.opts.root, PACK_FILE));
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.opts.fsync ? 'FULL' : 'NORMAL'}`);
      db.pragma('busy_timeout = 5000');
      db.exec('CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL)');
      db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)');
      db.prepare("INSERT OR IGNORE INTO meta (key, value) VALUES ('small_files_before', ?)").run(this.opts.smallFilesBefore ? 'yes' : 'no');
      const recorded = db.prepare("SELECT value FROM meta WHERE key = 'small_files_before'").get() as { value: string };
      this.legacyFiles = recorded.value !== 'no';
      this.statements = {
        // Moves when another connection commits (not for this one's own commits).
        dataVersion: db.prepare<[], number>('PRAGMA data_version').pluck(),
        // SQLite answers length() of a blob from the record header, without reading the blob's pages.
        size: db.prepare<[string], { size: number }>('SELECT length(data) AS size FROM blobs WHERE hash = ?'),
        sizes: db.prepare<[string], { hash: string; size: number }>(
          'SELECT b.hash AS hash, length(b.data) AS size FROM json_each(?) AS j JOIN blobs AS b ON b.hash = j.value',
        ),
        data: db.prepare<[string], { data: Buffer }>('SELECT data FROM blobs WHERE hash = ?'),
        // A row already there under this hash is replaced: callers store only verified bytes, and only where
        // the row is missing or of the wrong size (damaged), so an upload heals it.
        insert: db.prepare<[string, Buffer]>('INSERT INTO blobs (hash, data) VALUES (?, ?) ON CONFLICT (hash) DO UPDATE SET data = excluded.data'),
        remove: db.prepare<[string]>('DELETE FROM blobs WHERE hash = ?'),
        all: db.prepare<[], { hash: string; size: number }>('SELECT hash, length(data) AS size FROM blobs'),
      };
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    return this.statements;
  }
}
