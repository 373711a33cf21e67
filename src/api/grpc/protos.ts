/**
 * Loads the gRPC door's .proto files (protos/ at the repository root) once, at run time: protobufjs parses
 * them into one Root, which gives both the gRPC service definitions (through @grpc/proto-loader) and the
 * message codecs for what travels inside blobs and `Any` fields (Action, Command, ExecuteResponse,
 * PreconditionFailure, …). Both use {@link LOADER_OPTIONS}, the options the generated types in
 * `generated/` were made with, so a decoded message has exactly its generated `__Output` type.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { ServiceDefinition } from '@grpc/grpc-js';
import type { Options, PackageDefinition } from '@grpc/proto-loader';
import { fromJSON } from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import { InternalError, InvalidArgumentError } from '../../core/errors.js';

/** The .proto files served, relative to protos/. Imports (semver, longrunning, rpc, well-known types) follow. */
export const PROTO_FILES: readonly string[] = [
  'build/bazel/remote/execution/v2/remote_execution.proto',
  'google/bytestream/bytestream.proto',
  'google/rpc/error_details.proto',
  'google/rpc/code.proto',
  'grpc/health/v1/health.proto',
];

/**
 * How messages become JavaScript objects. Field names keep the .proto's snake_case (so code reads like the
 * spec); enums are their names; 64-bit integers are numbers, which every reader of a size checks with
 * Number.isSafeInteger (a size past 2^53 - 1 is refused, never rounded); omitted fields get their defaults
 * ([] / '' / 0 / false; null for messages).
 */
export const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
}) satisfies Options;

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

/** Encodes and decodes one message type. `In` is the permissive input type, `Out` the decoded one. */
export interface MessageCodec<In, Out> {
  readonly typeName: string;
  /** `type.googleapis.com/<full name>`, for packing into google.protobuf.Any. */
  readonly typeUrl: string;
  encode(message: In): Buffer;
  /** InvalidArgumentError for bytes that are not this message. */
  decode(bytes: Uint8Array): Out;
}

export interface ReapiProtos {
  readonly root: protobuf.Root;
  readonly packageDefinition: PackageDefinition;
  /** A service definition by its full name, e.g. `google.bytestream.ByteStream`. */
  service(fullName: string): ServiceDefinition;
  codec<In, Out>(fullName: string): MessageCodec<In, Out>;
}

let loaded: ReapiProtos | undefined;

/** The protos, parsed on first use. Throws InternalError when the protos/ directory cannot be found. */
export function reapiProtos(): ReapiProtos {
  loaded ??= load();
  return loaded;
}

/** protos/ at the repository root, found upwards from this module (it runs from src/ or dist/src/). */
export function protosDirectory(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, 'protos');
    if (existsSync(join(candidate, PROTO_FILES[0] as string))) return candidate;
    if (dirname(dir) === dir) throw new InternalError(`cannot find the protos/ directory above ${import.meta.dirname}`);
  }
}

function load(): ReapiProtos {
  const dir = protosDirectory();
  const root = new protobuf.Root();
  // Imports are relative to protos/; google/protobuf/* resolve to the well-known types protobufjs bundles.
  root.resolvePath = (_origin, target) => (isAbsolute(target) ? target : join(dir, target));
  root.loadSync(
    PROTO_FILES.map((f) => join(dir, f)),
    { keepCase: true },
  );
  root.resolveAll();
  const packageDefinition = fromJSON(root.toJSON(), LOADER_OPTIONS);
  const codecs = new Map<string, MessageCodec<unknown, unknown>>();
  return {
    root,
    packageDefinition,
    service(fullName) {
      const def = packageDefinition[fullName];
      if (!def || 'format' in def) throw new InternalError(`no service ${fullName} in the protos`);
      // proto-loader's service definition type and grpc-js's describe the same object.
      return def as unknown as ServiceDefinition;
    },
    codec<In, Out>(fullName: string): MessageCodec<In, Out> {
      let codec = codecs.get(fullName);
      if (!codec) {
        codec = makeCodec(root.lookupType(fullName));
        codecs.set(fullName, codec);
      }
      return codec as MessageCodec<In, Out>;
    },
  };
}

function makeCodec(type: protobuf.Type): MessageCodec<unknown, unknown> {
  const name = type.fullName.replace(/^\./, '');
  return {
    typeName: name,
    typeUrl: `type.googleapis.com/${name}`,
    encode: (message) => Buffer.from(type.encode(type.fromObject(message as Record<string, unknown>)).finish()),
    decode: (bytes) => {
      let message: protobuf.Message;
      try {
        message = type.decode(bytes);
      } catch (err) {
        throw new InvalidArgumentError(`not a valid ${name} message: ${err instanceof Error ? err.message : String(err)}`);
      }
      return type.toObject(message, TO_OBJECT);
    },
  };
}
