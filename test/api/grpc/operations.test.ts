/** REAPI's view of a job's end: an emergency-stopped action is done, DEADLINE_EXCEEDED, with no result. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { executeResponseOf, operationOf } from '../../../src/api/grpc/operations.js';
import type { JobRecord } from '../../../src/store/ports.js';
import { actionDigestOf, makeSpec, X86 } from '../../store/fixtures.js';

test('an emergency-stopped job is a finished operation answering DEADLINE_EXCEEDED without a result', () => {
  const spec = { ...makeSpec(), failsafeMs: 2_000 };
  const message = 'emergency stop by the server: still running 7000 ms after it started (max-runtime + failsafe) with no word from its worker; its lease is revoked';
  const job: JobRecord = {
    id: 'stopped',
    actionDigest: actionDigestOf(spec),
    instance: '',
    platform: X86,
    state: 'emergency_stopped',
    attempt: 1,
    priority: 0,
    spec,
    createdAtMs: 1,
    queuedAtMs: 1,
    startedAtMs: 2,
    completedAtMs: 7_002,
    queueTimeMs: 1,
    leaseOwner: null,
    leaseExpiresAtMs: null,
    cancelRequested: false,
    cached: false,
    result: null,
    failure: { code: 'DEADLINE_EXCEEDED', message },
    progress: null,
    noRetry: false,
    notifyUrl: null,
    name: null,
    labels: {},
  };
  const layout = { workingDirectory: spec.command.workingDirectory };
  assert.equal(operationOf(job, layout).done, true);
  const response = executeResponseOf(job, layout);
  assert.deepEqual(response.status, { code: GrpcStatus.DEADLINE_EXCEEDED, message });
  assert.equal(response.result, undefined);
  assert.equal(response.cached_result, false);
});
