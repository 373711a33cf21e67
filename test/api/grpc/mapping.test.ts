/** The gRPC door's pure mappings: platform properties, resource names, ActionResult ↔ RunReport. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { OutputLayout } from '../../../src/api/grpc/action-result.js';
import { exitCodeOf, fromActionResult, layoutOfCommand, outputPathsOf, toActionResult } from '../../../src/api/grpc/action-result.js';
import { InstanceNames } from '../../../src/api/grpc/instances.js';
import type { ActionResultOut, CommandOut } from '../../../src/api/grpc/messages.js';
import { platformOfProperties } from '../../../src/api/grpc/platform-properties.js';
import { parseReadResource, parseWriteResource } from '../../../src/api/grpc/resource-names.js';
import { grpcCode } from '../../../src/api/grpc/status.js';
import { digestOf, EMPTY_DIGEST } from '../../../src/core/digest.js';
import type { JobFailureCode } from '../../../src/core/errors.js';
import { InvalidArgumentError, JOB_FAILURE_CODES, UnsupportedPlatformError } from '../../../src/core/errors.js';
import type { RunReport } from '../../../src/core/model.js';

const X = digestOf('x');

describe('platform properties', () => {
  const p = (...props: Array<[string, string]>) => platformOfProperties(props.map(([name, value]) => ({ name, value })), 'x86_64-linux-cpu');

  test('map REAPI and remex spellings onto triples', () => {
    assert.equal(p(), 'x86_64-linux-cpu');
    assert.equal(p(['OSFamily', 'Linux'], ['ISA', 'x86-64']), 'x86_64-linux-cpu');
    assert.equal(p(['ISA', 'arm-a64'], ['ISA', 'armv8'], ['ISA', 'arm-neon']), 'aarch64-linux-cpu');
    assert.equal(p(['ISA', 'rv64g']), 'riscv64-linux-cpu');
    assert.equal(p(['ISA', 'riscv64']), 'riscv64-linux-cpu');
    assert.equal(p(['ISA', 'x86-32']), 'x86-linux-cpu');
    assert.equal(p(['ISA', 'power-isa-le']), 'ppc64le-linux-cpu');
    assert.equal(p(['remex-platform', 'arm64-linux-gpu']), 'aarch64-linux-gpu');
    assert.equal(p(['remex-platform', 'aarch64-linux-gpu'], ['ISA', 'arm-a64']), 'aarch64-linux-gpu');
  });

  test('refuse what they cannot honour, at once', () => {
    const bad: Array<Array<[string, string]>> = [
      [['ISA', 'sparc-v9']],
      [['OSFamily', 'windows']],
      [['OSFamily', 'linux'], ['OSFamily', 'macos']],
      [['ISA', 'x86-64'], ['ISA', 'arm-a64']],
      [['ISA', 'arm-sve']],
      [['ISA', 'x86-64'], ['ISA', 'arm-neon']],
      [['ISA', 'x86-64'], ['remex-platform', 'aarch64-linux-cpu']],
      [['remex-platform', 'aarch64']],
      [['Pool', 'default']],
    ];
    for (const props of bad) assert.throws(() => p(...props), UnsupportedPlatformError, JSON.stringify(props));
  });
});

describe('ByteStream resource names', () => {
  const h = X.hash;
  test('parse reads and uploads, with or without an instance, a sha256 segment, trailing metadata', () => {
    assert.deepEqual(parseReadResource(`blobs/${h}/1`), { instance: '', digest: X });
    assert.deepEqual(parseReadResource(`a/b/blobs/sha256/${h}/1`), { instance: 'a/b', digest: X });
    assert.deepEqual(parseWriteResource(`uploads/u-1/blobs/${h}/1`), { instance: '', uploadId: 'u-1', digest: X });
    assert.deepEqual(parseWriteResource(`main/uploads/u/blobs/${h}/1/meta/data`), { instance: 'main', uploadId: 'u', digest: X });
  });

  test('refuse malformed names and compressors other than zstd; read compressed-blobs/zstd names', () => {
    for (const name of ['', `blobs/${h}`, `blobs/${h}/1/extra`, `blobs/${h}/-1`, `blobs/${h}/1.5`, `blobs/${h.toUpperCase()}/1`, `blobs/md5/${h}/1`]) {
      assert.throws(() => parseReadResource(name), InvalidArgumentError, name);
    }
    assert.throws(() => parseWriteResource(`uploads/u/${h}/1`), InvalidArgumentError);
    assert.throws(() => parseWriteResource(`blobs/${h}/1`), InvalidArgumentError);
    assert.throws(() => parseReadResource(`compressed-blobs/deflate/${h}/1`), /compressor "deflate" is not supported/);
    assert.throws(() => parseWriteResource(`uploads/u/compressed-blobs/gzip/${h}/1`), /compressor "gzip" is not supported/);
    assert.throws(() => parseReadResource(`compressed-blobs/${h}/1`), InvalidArgumentError);
    assert.deepEqual(parseReadResource(`i/compressed-blobs/zstd/${h}/1`), { instance: 'i', digest: X, compressor: 'zstd' });
    assert.deepEqual(parseWriteResource(`uploads/u/compressed-blobs/zstd/sha256/${h}/1/meta`), { instance: '', uploadId: 'u', digest: X, compressor: 'zstd' });
  });
});

describe('instance names', () => {
  test('any well-formed name by default; only the listed ones when configured', () => {
    const any = new InstanceNames();
    assert.equal(any.check(''), '');
    assert.equal(any.check('a/b'), 'a/b');
    for (const bad of ['a/', '/a', 'a//b', 'x/blobs', 'operations', '..']) assert.throws(() => any.check(bad), InvalidArgumentError, bad);
    const listed = new InstanceNames(['main']);
    assert.equal(listed.check('main'), 'main');
    assert.throws(() => listed.check(''), InvalidArgumentError);
    assert.throws(() => new InstanceNames(['uploads']), InvalidArgumentError);
  });
});

describe('ActionResult ↔ RunReport', () => {
  const report: RunReport = {
    exitCode: null,
    signal: 'SIGSEGV',
    timedOut: false,
    limitExceeded: null,
    stdout: { digest: X, inlineBase64: Buffer.from('x').toString('base64'), totalBytes: 1, truncated: false },
    stderr: { digest: EMPTY_DIGEST, inlineBase64: '', totalBytes: 0, truncated: false },
    outputFiles: [
      { path: 'w/out/a', digest: X, isExecutable: true },
      { path: 'w/b', digest: X, isExecutable: false },
    ],
    outputDirectories: [
      { path: 'w/dir', treeDigest: X },
      { path: 'w', treeDigest: X },
    ],
    wallTimeMs: 1,
    cpuTimeMs: 1,
    maxRssKb: 1,
    emulated: false,
    worker: 'w1',
  };

  const command = (c: Partial<CommandOut>): CommandOut => ({
    arguments: [],
    environment_variables: [],
    output_files: [],
    output_directories: [],
    output_paths: [],
    platform: null,
    working_directory: '',
    output_node_properties: [],
    output_directory_format: 'TREE_ONLY',
    ...c,
  });

  test('paths become relative to the working directory; a signal is 128 + its number', () => {
    const layout: OutputLayout = layoutOfCommand(command({ working_directory: 'w', output_paths: ['out/a', 'b', 'dir', ''] }));
    const result = toActionResult(report, layout, { inlineStdout: true });
    assert.deepEqual(
      result.output_files?.map((f) => f.path),
      ['out/a', 'b'],
    );
    assert.deepEqual(
      result.output_directories?.map((d) => d.path),
      ['dir', ''],
    );
    assert.equal(result.exit_code, 128 + 11);
    assert.equal(exitCodeOf({ ...report, signal: null }), -1);
    assert.deepEqual(result.stdout_raw, Buffer.from('x'));
    assert.equal(result.stderr_raw, undefined);
  });

  test('a pre-v2.1 Command gets each output only in the kind it asked for', () => {
    const c = command({ output_files: ['b', 'dir'], output_directories: ['out/a'] });
    assert.deepEqual(outputPathsOf(c), ['b', 'dir', 'out/a']);
    const result = toActionResult({ ...report, outputFiles: [{ path: 'b', digest: X, isExecutable: false }, { path: 'out/a', digest: X, isExecutable: false }], outputDirectories: [{ path: 'dir', treeDigest: X }] }, layoutOfCommand(c));
    assert.deepEqual(
      result.output_files?.map((f) => f.path),
      ['b'],
    );
    assert.deepEqual(result.output_directories, []);
  });

  test('an uploaded result round-trips through the cache format', () => {
    const layout = layoutOfCommand(command({ working_directory: 'w', output_paths: ['o'] }));
    const uploaded = {
      output_files: [{ path: 'o', digest: { hash: X.hash, size_bytes: 1 }, is_executable: true, contents: Buffer.alloc(0), node_properties: null }],
      output_directories: [{ path: '', tree_digest: { hash: X.hash, size_bytes: 1 }, is_topologically_sorted: false, root_directory_digest: null }],
      output_symlinks: [],
      output_file_symlinks: [],
      output_directory_symlinks: [],
      exit_code: 2,
      stdout_raw: Buffer.alloc(0),
      stderr_raw: Buffer.alloc(0),
      stdout_digest: null,
      stderr_digest: null,
      execution_metadata: null,
    } as unknown as ActionResultOut;
    const stored = fromActionResult(uploaded, layout, { stdout: { digest: X, inline: Buffer.from('x') }, stderr: { digest: EMPTY_DIGEST, inline: null } });
    assert.deepEqual(stored.outputFiles, [{ path: 'w/o', digest: X, isExecutable: true }]);
    assert.deepEqual(stored.outputDirectories, [{ path: 'w', treeDigest: X }]);
    const back = toActionResult(stored, layout);
    assert.deepEqual(back.output_files, [{ path: 'o', digest: { hash: X.hash, size_bytes: 1 }, is_executable: true }]);
    assert.deepEqual(back.output_directories, [{ path: '', tree_digest: { hash: X.hash, size_bytes: 1 } }]);
    assert.equal(back.exit_code, 2);
  });

  test('every error and job-failure code has its gRPC status; LOST is UNAVAILABLE; an unknown stored code is INTERNAL', () => {
    assert.equal(grpcCode('FAILED_PRECONDITION'), 9);
    assert.equal(grpcCode('DEADLINE_EXCEEDED'), 4);
    assert.equal(grpcCode('LOST'), 14);
    for (const code of JOB_FAILURE_CODES) {
      const expected = code === 'LOST' ? 'UNAVAILABLE' : code;
      assert.equal(grpcCode(code), (GrpcStatus as unknown as Record<string, number>)[expected], code);
    }
    // Rows stored by another version of remex are not re-validated: whatever they hold maps somewhere.
    assert.equal(grpcCode('SOMETHING_ELSE' as JobFailureCode), 13);
    assert.equal(grpcCode('OK' as JobFailureCode), 13);
    assert.equal(grpcCode('toString' as JobFailureCode), 13);
  });
});
