/**
 * Tokens on the gRPC door: every call must carry `authorization: Bearer <client token>` metadata (what
 * Bazel sends with `--remote_header=authorization=Bearer …` or a credential helper). Checked by a server
 * interceptor before the handler sees the call: UNAUTHENTICATED without a valid token,
 * PERMISSION_DENIED for a worker token. grpc.health.v1 stays open, like HTTP's /healthz. A refusal is
 * answered through the door's one error converter (`status.ts`), as a handler's error would be.
 */
import { ServerInterceptingCall } from '@grpc/grpc-js';
import type { ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { peerAddress, refusalLogLevel } from '../../auth/failed-attempts.js';
import type { Authenticator } from '../../auth/tokens.js';
import { isRemexError } from '../../core/errors.js';
import { toCallStatus } from './status.js';

const OPEN_PREFIX = '/grpc.health.v1.Health/';

export function grpcAuthInterceptor(auth: Authenticator, logger: Logger): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, pass) => {
            if (method.path.startsWith(OPEN_PREFIX)) return pass(metadata);
            const values = metadata.get('authorization').filter((v): v is string => typeof v === 'string');
            try {
              auth.authorize(values.length > 0 ? values : undefined, ['client'], peerAddress(call.getPeer()));
            } catch (err) {
              // Anything but a refusal is a fault of the check itself: the converter logs it, the caller sees INTERNAL.
              if (isRemexError(err)) logger[refusalLogLevel(err)]({ method: method.path, peer: call.getPeer(), code: err.code }, 'gRPC call refused');
              call.sendStatus(toCallStatus(err, logger));
              return;
            }
            pass(metadata);
          },
        });
      },
    });
}
