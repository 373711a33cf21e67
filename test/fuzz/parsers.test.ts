/**
 * Fuzzing of every parser that takes outside bytes without a server around it: the executable-format
 * detector (random bytes and mutated real ELF files, scripts, PE and Mach-O headers), REAPI Directory and
 * Tree blobs (remex's own codec), Action and Command blobs as the gRPC door plans an execution from them,
 * ActionResults a client uploads, ByteStream resource names, HTTP execution requests and listing queries,
 * digests, platforms, labels, durations and the progress lines of long jobs. Each returns or refuses with a
 * RemexError; what it accepts is well-formed.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseExecutionQuery } from '../../src/api/execution-query.js';
import { parseExecutionRequest } from '../../src/api/execution-request.js';
import { fromActionResult } from '../../src/api/grpc/action-result.js';
import { planExecution } from '../../src/api/grpc/execution-plan.js';
import type { ActionResultOut } from '../../src/api/grpc/messages.js';
import { reapiProtos } from '../../src/api/grpc/protos.js';
import { parseReadResource, parseWriteResource } from '../../src/api/grpc/resource-names.js';
import { decodeDirectory, decodeTree, encodeDirectory, encodeTree } from '../../src/cas/directory-codec.js';
import { MemoryBlobStore } from '../../src/cas/memory/memory-blob-store.js';
import { validateDirectory } from '../../src/cas/tree.js';
import { digestOf, EMPTY_DIGEST, parseDigest, validateDigest } from '../../src/core/digest.js';
import { parseDuration } from '../../src/core/duration.js';
import { detectExecutable, EXECUTABLE_HEADER_BYTES } from '../../src/core/executable-format.js';
import { parseLabels } from '../../src/core/labels.js';
import type { Directory } from '../../src/core/model.js';
import { parsePlatform } from '../../src/core/platform.js';
import { DEFAULT_POLICY } from '../../src/server/config.js';
import { MAX_PROGRESS_LINE_CHARS, parseProgressLine } from '../../src/worker/progress/progress-line.js';
import { fuzzParams, mutate, parsesOrRefuses, parsesOrRefusesAsync } from './fuzz.js';

const mutations = fc.array(fc.record({ kind: fc.nat(), at: fc.nat(), value: fc.nat() }), { minLength: 1, maxLength: 8 });
const REAPI = 'build.bazel.remote.execution.v2';

function header(path: string): Buffer {
  return readFileSync(path).subarray(0, EXECUTABLE_HEADER_BYTES);
}

/** Real executables of this host, a script, and the first bytes of a PE and a 64-bit Mach-O file. */
function executableSamples(): Buffer[] {
  const pe = Buffer.alloc(512);
  pe.write('MZ', 0, 'latin1');
  pe.writeUInt32LE(0x80, 0x3c);
  pe.write('PE\0\0', 0x80, 'latin1');
  pe.writeUInt16LE(0x8664, 0x84);
  const macho = Buffer.alloc(64);
  macho.writeUInt32LE(0xfeedfacf, 0);
  macho.writeUInt32LE(0x01000007, 4);
  macho.writeUInt32LE(2, 12);
  return [header(process.execPath), header('/bin/sh'), Buffer.from('#!/bin/sh -e\necho hi\n'), Buffer.from('#!/usr/bin/env python3\n'), pe, macho];
}

const SAMPLE_DIRECTORY: Directory = {
  files: [
    { name: 'a.c', digest: EMPTY_DIGEST, isExecutable: false },
    { name: 'run', digest: digestOf('x'), isExecutable: true },
  ],
  directories: [{ name: 'sub', digest: digestOf('sub') }],
  symlinks: [{ name: 'link', target: 'sub/a.c' }],
};

describe('fuzz: parsers of outside bytes', () => {
  test('executable-format detector: random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        parsesOrRefuses(() => detectExecutable(bytes), 'detectExecutable');
      }),
      fuzzParams(300),
    );
  });

  test('executable-format detector: mutated ELF files, scripts, PE and Mach-O headers', () => {
    const samples = executableSamples();
    fc.assert(
      fc.property(fc.nat({ max: samples.length - 1 }), mutations, (which, ops) => {
        const bytes = mutate(samples[which] as Buffer, ops);
        if (parsesOrRefuses(() => detectExecutable(bytes), 'detectExecutable')) {
          const info = detectExecutable(bytes);
          assert.ok(info.kind === 'elf' || info.kind === 'script');
        }
      }),
      fuzzParams(300),
    );
  });

  test('Directory and Tree blobs: random bytes and mutations of real encodings', () => {
    const dirBytes = encodeDirectory(SAMPLE_DIRECTORY);
    const treeBytes = encodeTree({ root: SAMPLE_DIRECTORY, children: [{ files: [], directories: [], symlinks: [{ name: 's', target: '../x' }] }] });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)), mutations.map((ops) => mutate(dirBytes, ops)), mutations.map((ops) => mutate(treeBytes, ops))), (bytes) => {
        if (parsesOrRefuses(() => decodeDirectory(bytes), 'decodeDirectory')) {
          // What decodes is then validated as the worker and the gRPC door do: a clear refusal at worst.
          parsesOrRefuses(() => validateDirectory(decodeDirectory(bytes), ''), 'validateDirectory');
        }
        parsesOrRefuses(() => decodeTree(bytes), 'decodeTree');
      }),
      fuzzParams(500),
    );
  });

  test('Action and Command blobs, as the gRPC door plans an execution', async () => {
    const protos = reapiProtos();
    const command = protos.codec(`${REAPI}.Command`).encode({
      arguments: ['/bin/echo', 'hi'],
      environment_variables: [{ name: 'A', value: 'b' }],
      output_paths: ['out/a'],
      working_directory: 'sub',
    });
    const emptyRoot = encodeDirectory({ files: [], directories: [], symlinks: [] });
    const action = (commandBytes: Buffer): Buffer =>
      protos.codec(`${REAPI}.Action`).encode({
        command_digest: { hash: digestOf(commandBytes).hash, size_bytes: commandBytes.length },
        input_root_digest: { hash: digestOf(emptyRoot).hash, size_bytes: emptyRoot.length },
        timeout: { seconds: 10, nanos: 0 },
        platform: { properties: [{ name: 'OSFamily', value: 'Linux' }] },
      });
    await fc.assert(
      fc.asyncProperty(fc.boolean(), mutations, async (mutateAction, ops) => {
        const blobs = new MemoryBlobStore();
        const commandBytes = mutateAction ? command : mutate(command, ops);
        const actionBytes = mutateAction ? mutate(action(commandBytes), ops) : action(commandBytes);
        for (const b of [commandBytes, actionBytes, emptyRoot]) await blobs.put(digestOf(b), b);
        await parsesOrRefusesAsync(() => planExecution(digestOf(actionBytes), { blobs, policy: DEFAULT_POLICY, defaultPlatform: 'x86_64-linux-cpu' }), 'planExecution');
      }),
      fuzzParams(300),
    );
  });

  test('ActionResults a client uploads', () => {
    const codec = reapiProtos().codec<unknown, ActionResultOut>(`${REAPI}.ActionResult`);
    const sample = codec.encode({
      output_files: [{ path: 'out/a', digest: { hash: EMPTY_DIGEST.hash, size_bytes: 0 }, is_executable: true }],
      output_directories: [{ path: 'out/d', tree_digest: { hash: digestOf('t').hash, size_bytes: 1 } }],
      exit_code: 3,
      stdout_digest: { hash: EMPTY_DIGEST.hash, size_bytes: 0 },
      execution_metadata: { worker: 'w', execution_start_timestamp: { seconds: 1, nanos: 5 }, execution_completed_timestamp: { seconds: 2, nanos: 0 } },
    });
    fc.assert(
      fc.property(mutations, (ops) => {
        const bytes = mutate(sample, ops);
        let decoded: ActionResultOut | undefined;
        if (parsesOrRefuses(() => (decoded = codec.decode(bytes)), 'ActionResult decode') && decoded) {
          const result = decoded;
          parsesOrRefuses(() => fromActionResult(result, { workingDirectory: '' }, { stdout: { digest: EMPTY_DIGEST, inline: null }, stderr: { digest: EMPTY_DIGEST, inline: null } }), 'fromActionResult');
        }
      }),
      fuzzParams(300),
    );
  });

  test('ByteStream resource names and their sizes', () => {
    const hash = 'a'.repeat(64);
    const segment = fc.oneof(fc.constantFrom('blobs', 'uploads', 'compressed-blobs', 'sha256', 'zstd', hash, '0', '18446744073709551616', '-1', '', '..', 'main'), fc.string({ maxLength: 20 }));
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 9 }), (segments) => {
        const name = segments.join('/');
        if (parsesOrRefuses(() => parseReadResource(name), 'parseReadResource')) {
          const r = parseReadResource(name);
          assert.ok(Number.isSafeInteger(r.digest.sizeBytes) && r.digest.sizeBytes >= 0, name);
        }
        if (parsesOrRefuses(() => parseWriteResource(name), 'parseWriteResource')) {
          assert.ok(parseWriteResource(name).uploadId.length > 0, name);
        }
      }),
      fuzzParams(500),
    );
  });

  test('HTTP execution requests and listing queries', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.dictionary(fc.constantFrom('state', 'label', 'name', 'since', 'limit', 'after', 'x'), fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 3 }))), (body, query) => {
        parsesOrRefuses(() => parseExecutionRequest(body), 'parseExecutionRequest');
        parsesOrRefuses(() => parseExecutionQuery(query, Date.now()), 'parseExecutionQuery');
      }),
      fuzzParams(300),
    );
    // Requests that are nearly right: a valid one with one field replaced by any JSON value.
    const valid = { executable: { hash: 'b'.repeat(64), sizeBytes: 10 }, args: ['a'], timeoutMs: 1000 };
    fc.assert(
      fc.property(fc.constantFrom('executable', 'args', 'timeoutMs', 'files', 'stdin', 'env', 'limits', 'labels', 'platform', 'outputPaths', 'priority', 'notify', 'name'), fc.jsonValue({ maxDepth: 3 }), (field, value) => {
        parsesOrRefuses(() => parseExecutionRequest({ ...valid, [field]: value }), `parseExecutionRequest ${field}`);
      }),
      fuzzParams(300),
    );
  });

  test('digests, platforms, labels and durations', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.array(fc.string({ maxLength: 40 }), { maxLength: 4 }), fc.record({ hash: fc.anything(), sizeBytes: fc.anything() }), (text, texts, digest) => {
        parsesOrRefuses(() => parseDigest(text), 'parseDigest');
        parsesOrRefuses(() => validateDigest(digest), 'validateDigest');
        parsesOrRefuses(() => parsePlatform(text), 'parsePlatform');
        parsesOrRefuses(() => parseLabels(texts), 'parseLabels');
        if (parsesOrRefuses(() => parseDuration(text), 'parseDuration')) assert.ok(Number.isFinite(parseDuration(text)));
      }),
      fuzzParams(300),
    );
  });

  test('progress lines of long jobs never throw and hold their bounds', () => {
    const jsonish = fc.oneof(fc.string({ maxLength: 300 }), fc.json({ maxDepth: 5 }), fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ percent: v, message: v, metrics: v })));
    fc.assert(
      fc.property(jsonish, (line) => {
        const result = parseProgressLine(line);
        if (result.ok) {
          const p = result.update.percent;
          assert.ok(p === undefined || (p >= 0 && p <= 100), line);
        } else {
          assert.ok(result.reason.length > 0);
        }
      }),
      fuzzParams(500),
    );
    assert.equal(parseProgressLine('x'.repeat(MAX_PROGRESS_LINE_CHARS * 4)).ok, false);
  });
});
