/**
 * The HTTP/2 receive windows the REAPI door advertises, on either server (h2-door.ts, or grpc-js through
 * grpc-server.ts): larger than the protocol's 64 KiB default, or uploads crawl. Checked from a bare node:http2 client, as any REAPI client sees them; this
 * also catches a grpc-js upgrade that moves the internals the windows are set through.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:http2';
import type { ClientHttp2Session } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { CONNECTION_RECEIVE_WINDOW_BYTES, STREAM_RECEIVE_WINDOW_BYTES } from '../../../src/api/grpc/grpc-server.js';
import type { GrpcDoor } from '../../../src/api/grpc/grpc-server.js';
import { H2_CONNECTION_WINDOW_BYTES, H2_MAX_FRAME_BYTES, H2_STREAM_WINDOW_BYTES } from '../../../src/api/grpc/h2-door.js';
import type { GrpcHarness } from './harness.js';
import { startGrpcHarness } from './harness.js';

const DOORS: Array<{ door: GrpcDoor; stream: number; connection: number; frame: number }> = [
  { door: 'h2', stream: H2_STREAM_WINDOW_BYTES, connection: H2_CONNECTION_WINDOW_BYTES, frame: H2_MAX_FRAME_BYTES },
  { door: 'grpc-js', stream: STREAM_RECEIVE_WINDOW_BYTES, connection: CONNECTION_RECEIVE_WINDOW_BYTES, frame: 16_384 },
];

for (const { door, stream, connection, frame } of DOORS) {
  describe(`gRPC HTTP/2 flow control (${door} door)`, () => {
    let h: GrpcHarness;
    before(async () => {
      h = await startGrpcHarness({ door }, { workerSlots: 0 });
    });
    after(async () => {
      await h.close();
    });

    test('the server advertises a 1 MiB stream window, a larger connection window and its frame size', async () => {
      const session: ClientHttp2Session = connect(`http://${h.address}`);
      try {
        await once(session, 'connect');
        // The window comes in a SETTINGS frame after the first one, and the connection's in a WINDOW_UPDATE.
        const deadline = Date.now() + 5_000;
        while ((session.remoteSettings.initialWindowSize !== stream || (session.state.remoteWindowSize ?? 0) < connection) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        assert.equal(session.remoteSettings.initialWindowSize, stream);
        assert.equal(session.state.remoteWindowSize, connection);
        assert.equal(session.remoteSettings.maxFrameSize, frame);
        assert.ok(stream === 1024 * 1024 && connection >= stream);
      } finally {
        session.close();
      }
    });
  });
}
