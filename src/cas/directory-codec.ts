/**
 * The one place that turns a {@link Directory} into bytes and back. A Directory's digest is the digest
 * of these bytes, so the encoding must be canonical: one tree, one byte sequence, one digest.
 *
 * Encoding (remex JSON v1, a lead decision; a protobuf codec may replace this module): UTF-8 JSON with no
 * whitespace, object keys in sorted order, and each list sorted by name in UTF-8 byte order (the order
 * REAPI specifies), e.g. `{"directories":[],"files":[{"digest":{"hash":"…","sizeBytes":3},"isExecutable":false,"name":"a"}],"symlinks":[]}`.
 *
 * Decoding checks the shape only; whether names are safe and sorted is `validateDirectory`'s job (tree.ts).
 */
import type { Digest } from '../core/digest.js';
import { validateDigest } from '../core/digest.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Directory, DirectoryNode, FileNode, SymlinkNode } from '../core/model.js';

/** Names the encoding, for logs and for a future codec to tell itself apart. */
export const DIRECTORY_ENCODING = 'remex-json-v1';

/** Orders names as their UTF-8 bytes do (code point order), not as JavaScript compares UTF-16 units. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Canonical bytes of a Directory; entries are sorted here, so callers may build them in any order. */
export function encodeDirectory(dir: Directory): Buffer {
  const byName = <T extends { name: string }>(list: readonly T[]): T[] => [...list].sort((x, y) => compareNames(x.name, y.name));
  // Keys are written in sorted order: JSON.stringify keeps insertion order.
  const canonical = {
    directories: byName(dir.directories).map((d) => ({ digest: { hash: d.digest.hash, sizeBytes: d.digest.sizeBytes }, name: d.name })),
    files: byName(dir.files).map((f) => ({
      digest: { hash: f.digest.hash, sizeBytes: f.digest.sizeBytes },
      isExecutable: f.isExecutable,
      name: f.name,
    })),
    symlinks: byName(dir.symlinks).map((s) => ({ name: s.name, target: s.target })),
  };
  return Buffer.from(JSON.stringify(canonical), 'utf8');
}

/** Parses Directory bytes, checking their shape strictly (no missing, extra or mistyped fields); InvalidArgumentError otherwise. */
export function decodeDirectory(bytes: Uint8Array): Directory {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
  } catch (err) {
    throw new InvalidArgumentError('Directory blob is not valid UTF-8 JSON', { cause: err });
  }
  const obj = record(value, 'Directory', ['directories', 'files', 'symlinks']);
  return {
    directories: list(obj.directories, 'directories').map((v, i): DirectoryNode => {
      const e = record(v, `directories[${i}]`, ['digest', 'name']);
      return { name: str(e.name, `directories[${i}].name`), digest: digest(e.digest, `directories[${i}].digest`) };
    }),
    files: list(obj.files, 'files').map((v, i): FileNode => {
      const e = record(v, `files[${i}]`, ['digest', 'isExecutable', 'name']);
      if (typeof e.isExecutable !== 'boolean') throw new InvalidArgumentError(`Directory files[${i}].isExecutable must be a boolean`);
      return { name: str(e.name, `files[${i}].name`), digest: digest(e.digest, `files[${i}].digest`), isExecutable: e.isExecutable };
    }),
    symlinks: list(obj.symlinks, 'symlinks').map((v, i): SymlinkNode => {
      const e = record(v, `symlinks[${i}]`, ['name', 'target']);
      return { name: str(e.name, `symlinks[${i}].name`), target: str(e.target, `symlinks[${i}].target`) };
    }),
  };
}

function record(value: unknown, what: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidArgumentError(`Directory: ${what} must be an object`);
  const actual = Object.keys(value).sort();
  if (actual.length !== keys.length || actual.some((k, i) => k !== keys[i])) {
    throw new InvalidArgumentError(`Directory: ${what} must have exactly the fields ${keys.join(', ')}; has ${actual.join(', ') || 'none'}`);
  }
  return value as Record<string, unknown>;
}

function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) throw new InvalidArgumentError(`Directory: ${what} must be an array`);
  return value;
}

function str(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(`Directory: ${what} must be a string`);
  return value;
}

function digest(value: unknown, what: string): Digest {
  return validateDigest(record(value, what, ['hash', 'sizeBytes']), `Directory ${what}`);
}
