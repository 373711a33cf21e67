/**
 * The one place that turns a {@link Directory} (and a REAPI `Tree` of them) into bytes and back. A
 * Directory's digest is the digest of these bytes, so the encoding must be canonical: one tree, one byte
 * sequence, one digest.
 *
 * Encoding: the Remote Execution API's `build.bazel.remote.execution.v2.Directory` protobuf message, written
 * deterministically as protobuf libraries write proto3 (fields in field-number order, default values left
 * out, each list sorted by name in UTF-8 byte order as REAPI requires, `node_properties` never written).
 * So a tree built by the HTTP door has the digest a REAPI client would compute for it, and a tree uploaded
 * by a REAPI client stages directly in a worker.
 *
 * The wire format is written and read here by hand (a few dozen lines) rather than through a protobuf
 * library: the CAS layer and remote workers then need no .proto files at run time, and the decoder can be
 * strict about malformed bytes while skipping unknown fields, as protobuf requires.
 *
 * Decoding checks the wire format and each digest's shape; whether names are safe and sorted is
 * `validateDirectory`'s job (tree.ts).
 */
import type { Digest } from '../core/digest.js';
import { digestOf, validateDigest } from '../core/digest.js';
import { InvalidArgumentError } from '../core/errors.js';
import type { Directory, DirectoryNode, FileNode, SymlinkNode } from '../core/model.js';

/** Names the encoding, for logs and to tell it from remex's earlier canonical JSON (`remex-json-v1`). */
export const DIRECTORY_ENCODING = 'reapi-v2-directory-proto3';

/** A REAPI `Tree`: an output directory's root and every Directory below it, each once. */
export interface DirectoryTree {
  root: Directory;
  children: Directory[];
}

/** A decoded Tree child with the digest of its own encoding, which is how parents refer to it. */
export interface TreeChild {
  digest: Digest;
  directory: Directory;
}

/** Orders names as their UTF-8 bytes do (code point order), not as JavaScript compares UTF-16 units. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

// ---- encoding -----------------------------------------------------------------------------------------

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const START_GROUP = 3;
const END_GROUP = 4;
const FIXED32 = 5;

/** Canonical bytes of a Directory; entries are sorted here, so callers may build them in any order. */
export function encodeDirectory(dir: Directory): Buffer {
  const byName = <T extends { name: string }>(list: readonly T[]): T[] => [...list].sort((x, y) => compareNames(x.name, y.name));
  const out = new WireWriter();
  for (const f of byName(dir.files)) out.message(1, encodeFileNode(f));
  for (const d of byName(dir.directories)) out.message(2, encodeDirectoryNode(d));
  for (const s of byName(dir.symlinks)) out.message(3, encodeSymlinkNode(s));
  return out.finish();
}

/**
 * Bytes of a REAPI Tree: field 1 the root, field 2 each child, in the order given. Written this way, it is
 * also the record stream REAPI's `is_topologically_sorted` describes when the children are in that order.
 */
export function encodeTree(tree: DirectoryTree): Buffer {
  const out = new WireWriter();
  out.message(1, encodeDirectory(tree.root));
  for (const child of tree.children) out.message(2, encodeDirectory(child));
  return out.finish();
}

function encodeDigest(d: Digest): Buffer {
  const out = new WireWriter();
  out.string(1, d.hash);
  out.uint(2, d.sizeBytes);
  return out.finish();
}

function encodeFileNode(f: FileNode): Buffer {
  const out = new WireWriter();
  out.string(1, f.name);
  out.message(2, encodeDigest(f.digest));
  if (f.isExecutable) out.uint(4, 1);
  return out.finish();
}

function encodeDirectoryNode(d: DirectoryNode): Buffer {
  const out = new WireWriter();
  out.string(1, d.name);
  out.message(2, encodeDigest(d.digest));
  return out.finish();
}

function encodeSymlinkNode(s: SymlinkNode): Buffer {
  const out = new WireWriter();
  out.string(1, s.name);
  out.string(2, s.target);
  return out.finish();
}

/** Appends protobuf fields; proto3 defaults ('' and 0) are left out, as protobuf libraries do. */
class WireWriter {
  private readonly parts: Buffer[] = [];

  string(field: number, value: string): void {
    if (value === '') return;
    this.lengthDelimited(field, Buffer.from(value, 'utf8'));
  }

  /** An embedded message: always written when called, even when empty (the field is set). */
  message(field: number, bytes: Buffer): void {
    this.lengthDelimited(field, bytes);
  }

  uint(field: number, value: number): void {
    if (value === 0) return;
    this.parts.push(varint(field * 8 + VARINT), varint(value));
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }

  private lengthDelimited(field: number, bytes: Buffer): void {
    this.parts.push(varint(field * 8 + LENGTH_DELIMITED), varint(bytes.byteLength), bytes);
  }
}

/** Base-128 varint of a non-negative safe integer (arithmetic, not bit operations: values exceed 2^31). */
function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

// ---- decoding -----------------------------------------------------------------------------------------

/**
 * Parses Directory bytes. Unknown fields are skipped; malformed bytes (truncated, a bad wire type, invalid
 * UTF-8, a missing or malformed digest) are an InvalidArgumentError. Lists keep the order of the bytes.
 */
export function decodeDirectory(bytes: Uint8Array): Directory {
  return readDirectory(new WireReader(bytes, 'Directory'));
}

/**
 * Parses Tree bytes into its root and children, each child with the digest of its own bytes (how a parent
 * names it). InvalidArgumentError for malformed bytes or a Tree without a root.
 */
export function decodeTree(bytes: Uint8Array): { root: Directory; children: TreeChild[] } {
  const reader = new WireReader(bytes, 'Tree');
  let root: Directory | undefined;
  const children: TreeChild[] = [];
  while (!reader.done) {
    const { field, wireType } = reader.tag();
    if (field === 1 || field === 2) {
      reader.expect(wireType, LENGTH_DELIMITED, field === 1 ? 'root' : 'children');
      const raw = reader.bytes();
      const directory = readDirectory(new WireReader(raw, field === 1 ? 'Tree.root' : `Tree.children[${children.length}]`));
      if (field === 1) root = directory;
      else children.push({ digest: digestOf(raw), directory });
    } else reader.skip(wireType);
  }
  if (!root) throw new InvalidArgumentError('Tree has no root Directory');
  return { root, children };
}

function readDirectory(reader: WireReader): Directory {
  const dir: Directory = { files: [], directories: [], symlinks: [] };
  while (!reader.done) {
    const { field, wireType } = reader.tag();
    switch (field) {
      case 1:
        reader.expect(wireType, LENGTH_DELIMITED, 'files');
        dir.files.push(readFileNode(reader.sub(`files[${dir.files.length}]`)));
        break;
      case 2:
        reader.expect(wireType, LENGTH_DELIMITED, 'directories');
        dir.directories.push(readDirectoryNode(reader.sub(`directories[${dir.directories.length}]`)));
        break;
      case 3:
        reader.expect(wireType, LENGTH_DELIMITED, 'symlinks');
        dir.symlinks.push(readSymlinkNode(reader.sub(`symlinks[${dir.symlinks.length}]`)));
        break;
      default:
        reader.skip(wireType);
    }
  }
  return dir;
}

function readFileNode(reader: WireReader): FileNode {
  let name = '';
  let digest: Digest | undefined;
  let isExecutable = false;
  while (!reader.done) {
    const { field, wireType } = reader.tag();
    if (field === 1) name = reader.stringField(wireType, 'name');
    else if (field === 2) digest = readDigestField(reader, wireType);
    else if (field === 4) {
      reader.expect(wireType, VARINT, 'is_executable');
      isExecutable = reader.varint() !== 0;
    } else reader.skip(wireType);
  }
  if (!digest) throw new InvalidArgumentError(`Directory ${reader.what}: no digest`);
  return { name, digest, isExecutable };
}

function readDirectoryNode(reader: WireReader): DirectoryNode {
  let name = '';
  let digest: Digest | undefined;
  while (!reader.done) {
    const { field, wireType } = reader.tag();
    if (field === 1) name = reader.stringField(wireType, 'name');
    else if (field === 2) digest = readDigestField(reader, wireType);
    else reader.skip(wireType);
  }
  if (!digest) throw new InvalidArgumentError(`Directory ${reader.what}: no digest`);
  return { name, digest };
}

function readSymlinkNode(reader: WireReader): SymlinkNode {
  let name = '';
  let target = '';
  while (!reader.done) {
    const { field, wireType } = reader.tag();
    if (field === 1) name = reader.stringField(wireType, 'name');
    else if (field === 2) target = reader.stringField(wireType, 'target');
    else reader.skip(wireType);
  }
  return { name, target };
}

function readDigestField(parent: WireReader, wireType: number): Digest {
  parent.expect(wireType, LENGTH_DELIMITED, 'digest');
  const reader = parent.sub(`${parent.what}.digest`);
  let hash = '';
  let sizeBytes = 0;
  while (!reader.done) {
    const { field, wireType: wt } = reader.tag();
    if (field === 1) hash = reader.stringField(wt, 'hash');
    else if (field === 2) {
      reader.expect(wt, VARINT, 'size_bytes');
      sizeBytes = reader.varint();
    } else reader.skip(wt);
  }
  return validateDigest({ hash, sizeBytes }, `Directory ${reader.what}`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Reads protobuf fields from a byte range; every malformation is an InvalidArgumentError naming `what`. */
class WireReader {
  private pos: number;

  constructor(
    private readonly buf: Uint8Array,
    readonly what: string,
    start = 0,
    private readonly end = buf.byteLength,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  tag(): { field: number; wireType: number } {
    const key = this.varint();
    const field = Math.floor(key / 8);
    const wireType = key % 8;
    if (field === 0 || field > 0x1fffffff) this.fail(`invalid field number ${field}`);
    return { field, wireType };
  }

  /** A varint as a number; more than 2^53 - 1 (including negative int64s) is refused, not rounded. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const byte = this.buf[this.pos++] as number;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(value)) this.fail('integer too large');
        return value;
      }
      scale *= 0x80;
    }
    return this.fail('varint longer than 10 bytes');
  }

  bytes(): Uint8Array {
    const length = this.varint();
    if (length > this.end - this.pos) this.fail('length-delimited field runs past the end');
    const start = this.pos;
    this.pos += length;
    return this.buf.subarray(start, this.pos);
  }

  /** Reader over the embedded message that comes next. */
  sub(what: string): WireReader {
    const length = this.varint();
    if (length > this.end - this.pos) this.fail(`${what} runs past the end`);
    const reader = new WireReader(this.buf, what, this.pos, this.pos + length);
    this.pos += length;
    return reader;
  }

  stringField(wireType: number, name: string): string {
    this.expect(wireType, LENGTH_DELIMITED, name);
    try {
      return utf8.decode(this.bytes());
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err;
      return this.fail(`${name} is not valid UTF-8`);
    }
  }

  expect(wireType: number, wanted: number, name: string): void {
    if (wireType !== wanted) this.fail(`${name} has wire type ${wireType}, expected ${wanted}`);
  }

  /** Skips an unknown field, as protobuf readers must. */
  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case LENGTH_DELIMITED:
        this.bytes();
        return;
      case FIXED32:
        this.advance(4);
        return;
      case START_GROUP:
        for (;;) {
          if (this.done) this.fail('unterminated group');
          const { wireType: inner } = this.tag();
          if (inner === END_GROUP) return;
          this.skip(inner);
        }
      default:
        this.fail(`invalid wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) this.fail('truncated fixed-width field');
    this.pos += n;
  }

  private fail(reason: string): never {
    throw new InvalidArgumentError(`${this.what} is not a valid protobuf message: ${reason}`);
  }
}
