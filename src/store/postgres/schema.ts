/**
 * Schema migrations for the PostgreSQL store, applied in order at open under an advisory lock, each
 * recorded in `remex_migrations` in the same transaction as its DDL (PostgreSQL DDL is transactional, so a
 * controller that dies mid-migration leaves nothing half applied). Names are unqualified: the migration
 * runs with `search_path` set to the store's schema. A migration is never edited once released: add the
 * next one.
 *
 * Types: times are epoch milliseconds in int8 (the port passes `nowMs` in; the database clock is never
 * read, so controllers and tests agree on time); documents (spec, result, failure, platforms) are `json`,
 * which the server validates but keeps byte for byte (unlike jsonb, it accepts `\u0000`, which a program's
 * arguments or an error message may carry).
 */
export const POSTGRES_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE jobs (
    seq               int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                text NOT NULL UNIQUE,
    instance          text NOT NULL,
    action_hash       text NOT NULL,
    action_size       int8 NOT NULL,
    platform          text NOT NULL,
    state             text NOT NULL CHECK (state IN ('queued','running','completed','timed_out','cancelled','failed')),
    attempt           int4 NOT NULL DEFAULT 0,
    priority          int4 NOT NULL DEFAULT 0,
    mergeable         boolean NOT NULL,
    spec              json NOT NULL,
    created_at        int8 NOT NULL,
    queued_at         int8 NOT NULL,
    started_at        int8,
    completed_at      int8,
    queue_time_ms     int8 NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  int8,
    cancel_requested  boolean NOT NULL DEFAULT false,
    cached            boolean NOT NULL DEFAULT false,
    result            json,
    failure           json
  );
  -- Dispatch: the head of one platform's queue, in O(log n) however long the queue.
  CREATE INDEX jobs_queue ON jobs (platform, priority, seq) WHERE state = 'queued';
  CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
  CREATE INDEX jobs_owner ON jobs (lease_owner) WHERE state = 'running';
  -- At most one mergeable in-flight job per action: the merge is enforced by the database, not by luck.
  -- enqueue names this predicate in ON CONFLICT, so keep the two identical.
  CREATE UNIQUE INDEX jobs_inflight ON jobs (instance, action_hash, action_size)
    WHERE mergeable AND state IN ('queued','running');

  CREATE TABLE action_cache (
    instance     text NOT NULL,
    action_hash  text NOT NULL,
    action_size  int8 NOT NULL,
    result       json NOT NULL,
    stored_at    int8 NOT NULL,
    PRIMARY KEY (instance, action_hash, action_size)
  );

  CREATE TABLE workers (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    platforms      json NOT NULL,
    slots          int4 NOT NULL,
    state          text NOT NULL CHECK (state IN ('active','draining','gone')),
    registered_at  int8 NOT NULL,
    last_seen_at   int8 NOT NULL
  );
  `,
  // 2: what a worker says of itself beyond its platforms, and a drain order that outlives re-registrations.
  `
  ALTER TABLE workers ADD COLUMN labels json NOT NULL DEFAULT '{}';
  ALTER TABLE workers ADD COLUMN instance_id text;
  ALTER TABLE workers ADD COLUMN drain_requested boolean NOT NULL DEFAULT false;
  `,
  // 3: a job's name and labels, for fire-and-forget jobs listed and collected by them.
  `
  ALTER TABLE jobs ADD COLUMN name text;
  ALTER TABLE jobs ADD COLUMN labels json NOT NULL DEFAULT '{}';
  CREATE INDEX jobs_name ON jobs (name) WHERE name IS NOT NULL;
  `,
  // 4: a running job's latest progress, as its worker's heartbeats bring it.
  `
  ALTER TABLE jobs ADD COLUMN progress json;
  `,
  // 5: jobs that must not run twice (a lost worker fails them instead of requeuing them).
  `
  ALTER TABLE jobs ADD COLUMN no_retry boolean NOT NULL DEFAULT false;
  `,
  // 6: where the server POSTs a job's final result.
  `
  ALTER TABLE jobs ADD COLUMN notify_url text;
  `,
  // 7: comparisons (`remex compare`): the whole document, replaced as its runs arrive.
  `
  CREATE TABLE comparisons (
    id          text PRIMARY KEY,
    state       text NOT NULL,
    created_at  int8 NOT NULL,
    updated_at  int8 NOT NULL,
    document    json NOT NULL
  );
  `,
  // 8: the state emergency_stopped (a run a failsafe layer ended).
  `
  ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
  ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued','running','completed','timed_out','cancelled','failed','emergency_stopped'));
  `,
  // 9: the blobs finished jobs and action-cache entries reference, for the retention sweep (decision 0047).
  // Owners: 'j:<job id>', 'a:<instance>/<action hash>/<size>', 't:<Directory or Tree hash>' (its own entries).
  // Deleting a recorded job or entry, or replacing an entry's result, releases its hashes in the same statement.
  // The trigger functions keep the migration's search_path, so they find the tables whatever the session's.
  `
  CREATE TABLE blob_refs (
    owner  text NOT NULL,
    hash   text NOT NULL,
    PRIMARY KEY (owner, hash)
  );
  CREATE INDEX blob_refs_hash ON blob_refs (hash);
  CREATE TABLE blob_refs_released (hash text PRIMARY KEY);
  ALTER TABLE jobs ADD COLUMN refs_recorded boolean NOT NULL DEFAULT false;
  CREATE INDEX jobs_refs_unrecorded ON jobs (seq)
    WHERE NOT refs_recorded AND state IN ('completed','timed_out','cancelled','failed','emergency_stopped');
  ALTER TABLE action_cache ADD COLUMN refs_recorded boolean NOT NULL DEFAULT false;
  CREATE INDEX action_cache_refs_unrecorded ON action_cache (stored_at) WHERE NOT refs_recorded;
  CREATE FUNCTION remex_release_refs(owner_key text) RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    INSERT INTO blob_refs_released (hash) SELECT hash FROM blob_refs WHERE owner = owner_key ON CONFLICT DO NOTHING;
    DELETE FROM blob_refs WHERE owner = owner_key;
  $$;
  CREATE FUNCTION remex_jobs_release_refs() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
  BEGIN
    IF OLD.refs_recorded THEN PERFORM remex_release_refs('j:' || OLD.id); END IF;
    RETURN NULL;
  END $$;
  CREATE TRIGGER jobs_release_refs AFTER DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION remex_jobs_release_refs();
  CREATE FUNCTION remex_action_cache_release_refs() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
  BEGIN
    IF OLD.refs_recorded THEN
      PERFORM remex_release_refs('a:' || OLD.instance || '/' || OLD.action_hash || '/' || OLD.action_size);
    END IF;
    IF TG_OP = 'UPDATE' THEN
      NEW.refs_recorded := false;
      RETURN NEW;
    END IF;
    RETURN OLD;
  END $$;
  CREATE TRIGGER action_cache_release_refs BEFORE DELETE OR UPDATE OF result ON action_cache
    FOR EACH ROW EXECUTE FUNCTION remex_action_cache_release_refs();
  `,
  // 10: what a worker says it costs per hour (`remex worker --price-per-hour`), for `remex workers`.
  `
  ALTER TABLE workers ADD COLUMN price_per_hour float8;
  `,
  // 11: live-log pieces in the CAS, so that a follower on any controller reads what another took in (decision 0043).
  `
  CREATE TABLE log_pieces (
    job_id      text NOT NULL,
    attempt     int4 NOT NULL,
    stream      text NOT NULL,
    "offset"    int8 NOT NULL,
    size_bytes  int8 NOT NULL,
    hash        text NOT NULL,
    PRIMARY KEY (job_id, attempt, stream, "offset")
  );
  `,
];
