/** Starts a real remex server (SQLite, filesystem CAS, bubblewrap workers) on a free port in a temp dir. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { RemexClient } from '../../src/client/remex-client.js';
import type { ServeOptions, RunningServer } from '../../src/server/server.js';
import { DEFAULT_MAX_BLOB_BYTES, DEFAULT_POLICY, startServer } from '../../src/server/server.js';

export interface TestServer {
  server: RunningServer;
  client: RemexClient;
  dataDir: string;
  close(): Promise<void>;
}

export async function startTestServer(overrides: Partial<ServeOptions> = {}): Promise<TestServer> {
  const dataDir = overrides.dataDir ?? mkdtempSync(join(tmpdir(), 'remex-test-'));
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    dataDir,
    workerSlots: 2,
    maxBlobBytes: DEFAULT_MAX_BLOB_BYTES,
    policy: DEFAULT_POLICY,
    scheduler: {},
    logger: pino({ level: process.env.REMEX_TEST_LOG ?? 'silent' }),
    ...overrides,
  });
  return {
    server,
    client: new RemexClient(server.url),
    dataDir,
    close: async () => {
      await server.close();
      if (!overrides.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
