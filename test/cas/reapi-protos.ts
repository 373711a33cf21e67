/**
 * The REAPI messages as protobufjs reads them from protos/, independently of remex's hand-written codec:
 * to cross-check that codec's bytes and to craft Directory blobs exactly as given (unsorted, duplicated),
 * which the codec itself never writes.
 */
import { join, resolve } from 'node:path';
import protobuf from 'protobufjs';
import type { Directory } from '../../src/core/model.js';

const PROTOS = resolve(import.meta.dirname, '..', '..', '..', 'protos');

let root: protobuf.Root | undefined;

export function reapiType(name: string): protobuf.Type {
  if (!root) {
    root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(PROTOS, target));
    root.loadSync(join(PROTOS, 'build/bazel/remote/execution/v2/remote_execution.proto'), { keepCase: true });
    root.resolveAll();
  }
  return root.lookupType(`build.bazel.remote.execution.v2.${name}`);
}

/**
 * A remex Directory as a plain object of the REAPI message (snake_case). Default scalars (false, 0) are
 * left out: protobufjs writes any field that is set, even to its default, where Java, Go and C++ protobuf
 * (what REAPI clients use) leave proto3 defaults out.
 */
export function directoryMessage(dir: Directory): Record<string, unknown> {
  const digest = (d: { hash: string; sizeBytes: number }) => ({ hash: d.hash, ...(d.sizeBytes !== 0 ? { size_bytes: d.sizeBytes } : {}) });
  return {
    files: dir.files.map((f) => ({ name: f.name, digest: digest(f.digest), ...(f.isExecutable ? { is_executable: true } : {}) })),
    directories: dir.directories.map((d) => ({ name: d.name, digest: digest(d.digest) })),
    symlinks: dir.symlinks.map((s) => ({ name: s.name, target: s.target })),
  };
}

/** Protobufjs's encoding of a Directory message, lists in the order given. */
export function encodeWithProtobufjs(typeName: string, message: Record<string, unknown>): Buffer {
  const type = reapiType(typeName);
  return Buffer.from(type.encode(type.fromObject(message)).finish());
}

/** A Directory's bytes with its lists as given: crafted trees skip every check a builder would make. */
export function rawDirectoryBytes(dir: Directory): Buffer {
  return encodeWithProtobufjs('Directory', directoryMessage(dir));
}
