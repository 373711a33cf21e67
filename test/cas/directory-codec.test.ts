import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeDirectory, decodeTree, DIRECTORY_ENCODING, encodeDirectory, encodeTree } from '../../src/cas/directory-codec.js';
import { digestOf, EMPTY_DIGEST } from '../../src/core/digest.js';
import { InvalidArgumentError } from '../../src/core/errors.js';
import type { Directory } from '../../src/core/model.js';
import { directoryMessage, encodeWithProtobufjs, reapiType } from './reapi-protos.js';

const EMPTY_DIR: Directory = { files: [], directories: [], symlinks: [] };
const X = digestOf('x');

const SAMPLE: Directory = {
  files: [
    { name: 'a.c', digest: X, isExecutable: false },
    { name: 'empty', digest: EMPTY_DIGEST, isExecutable: false },
    { name: 'huge', digest: { hash: X.hash, sizeBytes: 5_000_000_000 }, isExecutable: true },
  ],
  directories: [{ name: 'sub', digest: digestOf('sub') }],
  symlinks: [{ name: 'link', target: 'sub/x' }],
};

function hex(...parts: Array<string | number[] | Buffer>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
}

describe('Directory codec (REAPI protobuf)', () => {
  test('names its encoding', () => {
    assert.equal(DIRECTORY_ENCODING, 'reapi-v2-directory-proto3');
  });

  test('writes the exact proto3 wire bytes: fields in number order, defaults left out', () => {
    const bytes = encodeDirectory({ ...EMPTY_DIR, files: [{ name: 'a', digest: X, isExecutable: true }] });
    // FileNode: name (1), digest (2: hash 1, size_bytes 2), is_executable (4).
    const digest = hex([0x0a, 64], X.hash, [0x10, 0x01]);
    const fileNode = hex([0x0a, 0x01], 'a', [0x12, digest.length], digest, [0x20, 0x01]);
    assert.deepEqual(bytes, hex([0x0a, fileNode.length], fileNode));
  });

  test('the empty Directory is zero bytes, so its digest is the empty blob (always present)', () => {
    assert.equal(encodeDirectory(EMPTY_DIR).length, 0);
    assert.deepEqual(digestOf(encodeDirectory(EMPTY_DIR)), EMPTY_DIGEST);
    assert.deepEqual(decodeDirectory(new Uint8Array(0)), EMPTY_DIR);
  });

  test('matches what a protobuf library writes for the same sorted Directory, sizes past 2^32 included', () => {
    assert.deepEqual(encodeDirectory(SAMPLE), encodeWithProtobufjs('Directory', directoryMessage(SAMPLE)));
  });

  test('sorts each list by name, so callers may build it in any order', () => {
    const shuffled: Directory = { files: [...SAMPLE.files].reverse(), directories: SAMPLE.directories, symlinks: SAMPLE.symlinks };
    assert.deepEqual(encodeDirectory(shuffled), encodeDirectory(SAMPLE));
  });

  test('round-trips, and decodes what a protobuf library wrote', () => {
    assert.deepEqual(decodeDirectory(encodeDirectory(SAMPLE)), SAMPLE);
    const type = reapiType('Directory');
    const viaLibrary = Buffer.from(type.encode(type.fromObject(directoryMessage(SAMPLE))).finish());
    assert.deepEqual(decodeDirectory(viaLibrary), SAMPLE);
  });

  test('skips unknown fields and node_properties of every wire type', () => {
    const withExtras = encodeWithProtobufjs('Directory', {
      ...directoryMessage(SAMPLE),
      node_properties: { properties: [{ name: 'k', value: 'v' }], unix_mode: { value: 0o755 } },
      files: (directoryMessage(SAMPLE).files as Array<Record<string, unknown>>).map((f) => ({ ...f, node_properties: { mtime: { seconds: 1, nanos: 2 } } })),
    });
    const unknown = Buffer.concat([
      withExtras,
      hex([0xf8, 0x06, 0x2a]), // field 111, varint
      hex([0xf9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]), // field 111, fixed64
      hex([0xfd, 0x06, 1, 2, 3, 4]), // field 111, fixed32
      hex([0xfa, 0x06, 0x02, 0x61, 0x62]), // field 111, length-delimited
      hex([0xfb, 0x06, 0x08, 0x01, 0xfc, 0x06]), // field 111, a group holding a varint
    ]);
    assert.deepEqual(decodeDirectory(unknown), SAMPLE);
  });

  test('refuses malformed bytes with InvalidArgumentError', () => {
    const good = encodeDirectory(SAMPLE);
    const digest = hex([0x0a, 64], X.hash, [0x10, 0x01]);
    const file = (...inner: Buffer[]): Buffer => {
      const body = Buffer.concat(inner);
      return hex([0x0a, body.length], body);
    };
    const cases: Array<[string, Buffer]> = [
      ['truncated', good.subarray(0, good.length - 3)],
      ['length past the end', hex([0x0a, 0x7f, 0x00])],
      ['truncated varint', hex([0x0a, 0x80])],
      ['field number 0', hex([0x00, 0x01])],
      ['wire types 6 and 7 do not exist', hex([0x0e])],
      ['files with a varint wire type', hex([0x08, 0x01])],
      ['unterminated group', hex([0xfb, 0x06, 0x08, 0x01])],
      ['stray end of group', hex([0xfc, 0x06])],
      ['a file without a digest', file(hex([0x0a, 0x01], 'a'))],
      ['a name that is not UTF-8', file(hex([0x0a, 0x02, 0xc3, 0x28, 0x12, digest.length], digest))],
      ['a malformed hash', file(hex([0x0a, 0x01], 'a', [0x12, 0x05, 0x0a, 0x03], 'abc'))],
      ['a negative size', file(hex([0x0a, 0x01], 'a', [0x12, digest.length + 9, 0x0a, 64], X.hash, [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]))],
      ['a size past 2^53', file(hex([0x0a, 0x01], 'a', [0x12, digest.length + 7, 0x0a, 64], X.hash, [0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]))],
      ['JSON (the old encoding)', Buffer.from(JSON.stringify({ directories: [], files: [], symlinks: [] }))],
    ];
    for (const [what, bytes] of cases) assert.throws(() => decodeDirectory(bytes), InvalidArgumentError, what);
  });
});

describe('Tree codec', () => {
  const child: Directory = { ...EMPTY_DIR, files: [{ name: 'leaf', digest: X, isExecutable: false }] };
  const root: Directory = { ...EMPTY_DIR, directories: [{ name: 'c', digest: digestOf(encodeDirectory(child)) }] };

  test('writes root then children, as a protobuf library does', () => {
    const bytes = encodeTree({ root, children: [child] });
    assert.deepEqual(bytes, encodeWithProtobufjs('Tree', { root: directoryMessage(root), children: [directoryMessage(child)] }));
    // The record stream REAPI describes for topologically sorted trees: 0x0a root, then 0x12 per child.
    assert.equal(bytes[0], 0x0a);
  });

  test('decodes children with the digests their parents name them by', () => {
    const decoded = decodeTree(encodeTree({ root, children: [child] }));
    assert.deepEqual(decoded.root, root);
    assert.deepEqual(decoded.children, [{ digest: root.directories[0]?.digest, directory: child }]);
  });

  test('an empty root is still a root; a Tree without one is refused', () => {
    assert.deepEqual(decodeTree(encodeTree({ root: EMPTY_DIR, children: [] })), { root: EMPTY_DIR, children: [] });
    assert.throws(() => decodeTree(new Uint8Array(0)), InvalidArgumentError);
    assert.throws(() => decodeTree(hex([0x0a, 0x05, 0x01])), InvalidArgumentError);
  });
});
