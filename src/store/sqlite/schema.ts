/**
 * Schema migrations for the SQLite store, applied in order at open; PRAGMA user_version records the
 * last one applied. A migration is never edited once released: add the next one.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE jobs (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    instance          TEXT NOT NULL,
    action_hash       TEXT NOT NULL,
    action_size       INTEGER NOT NULL,
    platform          TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('queued','running','completed','timed_out','cancelled','failed')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    priority          INTEGER NOT NULL DEFAULT 0,
    mergeable         INTEGER NOT NULL,
    spec              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    queued_at         INTEGER NOT NULL,
    started_at        INTEGER,
    completed_at      INTEGER,
    queue_time_ms     INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    cached            INTEGER NOT NULL DEFAULT 0,
    result            TEXT,
    failure           TEXT
  );
  -- Dispatch: the head of one platform's queue, in O(log n) however long the queue.
  CREATE INDEX jobs_queue ON jobs (platform, priority, seq) WHERE state = 'queued';
  CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
  CREATE INDEX jobs_owner ON jobs (lease_owner) WHERE state = 'running';
  -- At most one mergeable in-flight job per action: the merge is enforced by the database, not by luck.
  CREATE UNIQUE INDEX jobs_inflight ON jobs (instance, action_hash, action_size)
    WHERE mergeable = 1 AND state IN ('queued','running');

  CREATE TABLE action_cache (
    instance     TEXT NOT NULL,
    action_hash  TEXT NOT NULL,
    action_size  INTEGER NOT NULL,
    result       TEXT NOT NULL,
    stored_at    INTEGER NOT NULL,
    PRIMARY KEY (instance, action_hash, action_size)
  ) WITHOUT ROWID;

  CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    platforms      TEXT NOT NULL,
    slots          INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('active','draining','gone')),
    registered_at  INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 2: what a worker says of itself beyond its platforms, and a drain order that outlives re-registrations.
  `
  ALTER TABLE workers ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
  ALTER TABLE workers ADD COLUMN instance_id TEXT;
  ALTER TABLE workers ADD COLUMN drain_requested INTEGER NOT NULL DEFAULT 0;
  `,
  // 3: a job's name and labels, for fire-and-forget jobs listed and collected by them.
  `
  ALTER TABLE jobs ADD COLUMN name TEXT;
  ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
  CREATE INDEX jobs_name ON jobs (name) WHERE name IS NOT NULL;
  `,
  // 4: a running job's latest progress, as its worker's heartbeats bring it.
  `
  ALTER TABLE jobs ADD COLUMN progress TEXT;
  `,
  // 5: jobs that must not run twice (a lost worker fails them instead of requeuing them).
  `
  ALTER TABLE jobs ADD COLUMN no_retry INTEGER NOT NULL DEFAULT 0;
  `,
  // 6: where the server POSTs a job's final result.
  `
  ALTER TABLE jobs ADD COLUMN notify_url TEXT;
  `,
  // 7: comparisons (`remex compare`): the whole document, replaced as its runs arrive.
  `
  CREATE TABLE comparisons (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    document    TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 8: the state `emergency_stopped` (a run a failsafe layer ended). SQLite cannot alter a CHECK: the table is
  // rebuilt with the same columns, rows and indexes (the seq counter goes with the rename).
  `
  CREATE TABLE jobs_v8 (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    instance          TEXT NOT NULL,
    action_hash       TEXT NOT NULL,
    action_size       INTEGER NOT NULL,
    platform          TEXT NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('queued','running','completed','timed_out','cancelled','failed','emergency_stopped')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    priority          INTEGER NOT NULL DEFAULT 0,
    mergeable         INTEGER NOT NULL,
    spec              TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    queued_at         INTEGER NOT NULL,
    started_at        INTEGER,
    completed_at      INTEGER,
    queue_time_ms     INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    cached            INTEGER NOT NULL DEFAULT 0,
    result            TEXT,
    failure           TEXT,
    name              TEXT,
    labels            TEXT NOT NULL DEFAULT '{}',
    progress          TEXT,
    no_retry          INTEGER NOT NULL DEFAULT 0,
    notify_url        TEXT
  );
  INSERT INTO jobs_v8 (seq, id, instance, action_hash, action_size, platform, state, attempt, priority, mergeable, spec,
      created_at, queued_at, started_at, completed_at, queue_time_ms, lease_owner, lease_expires_at, cancel_requested,
      cached, result, failure, name, labels, progress, no_retry, notify_url)
    SELECT seq, id, instance, action_hash, action_size, platform, state, attempt, priority, mergeable, spec,
      created_at, queued_at, started_at, completed_at, queue_time_ms, lease_owner, lease_expires_at, cancel_requested,
      cached, result, failure, name, labels, progress, no_retry, notify_url FROM jobs;
  DROP TABLE jobs;
  ALTER TABLE jobs_v8 RENAME TO jobs;
  CREATE INDEX jobs_queue ON jobs (platform, priority, seq) WHERE state = 'queued';
  CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
  CREATE INDEX jobs_owner ON jobs (lease_owner) WHERE state = 'running';
  CREATE UNIQUE INDEX jobs_inflight ON jobs (instance, action_hash, action_size)
    WHERE mergeable = 1 AND state IN ('queued','running');
  CREATE INDEX jobs_name ON jobs (name) WHERE name IS NOT NULL;
  `,
  // 9: the blobs finished jobs and action-cache entries reference, for the retention sweep (decision 0047).
  // Owners: 'j:<job id>', 'a:<instance>/<action hash>/<size>', 't:<Directory or Tree hash>' (its own entries).
  // Deleting a recorded job or entry, or replacing an entry's result, releases its hashes in the same statement.
  `
  CREATE TABLE blob_refs (
    owner  TEXT NOT NULL,
    hash   TEXT NOT NULL,
    PRIMARY KEY (owner, hash)
  ) WITHOUT ROWID;
  CREATE INDEX blob_refs_hash ON blob_refs (hash);
  CREATE TABLE blob_refs_released (hash TEXT PRIMARY KEY) WITHOUT ROWID;
  ALTER TABLE jobs ADD COLUMN refs_recorded INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX jobs_refs_unrecorded ON jobs (seq)
    WHERE refs_recorded = 0 AND state IN ('completed','timed_out','cancelled','failed','emergency_stopped');
  ALTER TABLE action_cache ADD COLUMN refs_recorded INTEGER NOT NULL DEFAULT 0;
  CREATE INDEX action_cache_refs_unrecorded ON action_cache (stored_at) WHERE refs_recorded = 0;
  CREATE TRIGGER jobs_release_refs AFTER DELETE ON jobs WHEN old.refs_recorded = 1 BEGIN
    INSERT OR IGNORE INTO blob_refs_released (hash) SELECT hash FROM blob_refs WHERE owner = 'j:' || old.id;
    DELETE FROM blob_refs WHERE owner = 'j:' || old.id;
  END;
  CREATE TRIGGER action_cache_release_refs AFTER DELETE ON action_cache WHEN old.refs_recorded = 1 BEGIN
    INSERT OR IGNORE INTO blob_refs_released (hash)
      SELECT hash FROM blob_refs WHERE owner = 'a:' || old.instance || '/' || old.action_hash || '/' || old.action_size;
    DELETE FROM blob_refs WHERE owner = 'a:' || old.instance || '/' || old.action_hash || '/' || old.action_size;
  END;
  CREATE TRIGGER action_cache_rerecord AFTER UPDATE OF result ON action_cache WHEN old.refs_recorded = 1 BEGIN
    INSERT OR IGNORE INTO blob_refs_released (hash)
      SELECT hash FROM blob_refs WHERE owner = 'a:' || old.instance || '/' || old.action_hash || '/' || old.action_size;
    DELETE FROM blob_refs WHERE owner = 'a:' || old.instance || '/' || old.action_hash || '/' || old.action_size;
    UPDATE action_cache SET refs_recorded = 0
      WHERE instance = old.instance AND action_hash = old.action_hash AND action_size = old.action_size;
  END;
  `,
  // 10: what a worker says it costs per hour (`remex worker --price-per-hour`), for `remex workers`.
  `
  ALTER TABLE workers ADD COLUMN price_per_hour REAL;
  `,
  // 11: live-log pieces in the CAS, shared by whoever reads this store (decision 0043).
  `
  CREATE TABLE log_pieces (
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    stream      TEXT NOT NULL,
    offset      INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (job_id, attempt, stream, offset)
  ) WITHOUT ROWID;
  `,
];
