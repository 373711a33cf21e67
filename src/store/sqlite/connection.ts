/**
 * The SQLite driver layer under every port of this adapter: one better-sqlite3 connection to a file in WAL
 * mode, configured for a server, and its schema migrated at open. Calls are synchronous underneath, so a
 * statement or a short transaction is atomic with respect to every other caller in the process. Nothing
 * here knows jobs, workers or the action cache; the port adapters own their SQL.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { SQLITE_MIGRATIONS } from './schema.js';

/** Opens (creating it and its directory when missing) the database at `path`, or ':memory:', and migrates it. */
export function openSqlite(path: string): Database.Database {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a committed transaction survives a process crash; only an OS crash may lose the
  // last few, which leases and at-least-once execution tolerate.
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

/** Applies the migrations past PRAGMA user_version, each in its own transaction (IMMEDIATE: it writes). */
function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  for (let v = current; v < SQLITE_MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(SQLITE_MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}
