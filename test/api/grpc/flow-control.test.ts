/**
 * The HTTP/2 receive windows the REAPI door advertises (grpc-server.ts): larger than the protocol's 64 KiB
 * default, or uploads crawl. Checked from a bare node:http2 client, as any REAPI client sees them; this
 * also catches a grpc-js upgrade that moves the internals the windows are set through.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { CONNECTION_RECEIVE_WINDOW_BYTES, STREAM_RECEIVE_WINDOW_BYTES } from '../../../src/api/grpc/grpc-server.js';
import type { GrpcHarness } from './harness.js';
import { startGrpcHarness } from './harness.js';

let h: GrpcHarness;

describe('gRPC HTTP/2 flow control', () => {
  before(async () => {
    h = await startGrpcHarness({}, { workerSlots: 0 });
  });
  after(async () => {
    await h.close();
  });

  test('the server advertises a 1 MiB stream window and a larger connection window', async () => {
    const session: ClientHttp2Session = connect(`http://${h.address}`);
    try {
      await once(session, 'connect');
      // The window comes in a SETTINGS frame after the first one, and the connection's in a WINDOW_UPDATE.
      const deadline = Date.now() + 5_000;
      while (
        (session.remoteSettings.initialWindowSize !== STREAM_RECEIVE_WINDOW_BYTES || (session.state.remoteWindowSize ?? 0) < CONNECTION_RECEIVE_WINDOW_BYTES) &&
        Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(session.remoteSettings.initialWindowSize, STREAM_RECEIVE_WINDOW_BYTES);
      assert.equal(session.state.remoteWindowSize, CONNECTION_RECEIVE_WINDOW_BYTES);
      assert.ok(STREAM_RECEIVE_WINDOW_BYTES > 65_535 && CONNECTION_RECEIVE_WINDOW_BYTES >= STREAM_RECEIVE_WINDOW_BYTES);
    } finally {
      session.close();
    }
  });
});
