"""ByteStream Write then Read of one blob through gRPC's C core (Debian's python3-grpcio), for
bench/grpc-bytestream: a client much faster than grpc-js, as Bazel's grpc-java is, so the figures show
what a server moves when the client is not what limits it.

usage: bytestream-client.py ADDRESS BYTES SEED [--no-verify]

The blob is SEED's pattern (1 MiB of a seeded PRNG, each 1 MiB chunk stamped with its offset), generated
chunk by chunk; a first pass hashes it for the resource name. Requests and responses are encoded by hand
(WriteRequest: resource_name = 1, write_offset = 2, finish_write = 3, data = 10; ReadRequest:
resource_name = 1; ReadResponse: data = 10), so no generated code is needed. The download is hashed as
it arrives and, unless --no-verify (a server that stores nothing), must match. Prints one JSON line:
{"hash_ms", "write_ms", "read_ms", "committed", "read_bytes"}.
"""
import hashlib
import json
import random
import struct
import sys
import time
import uuid

import grpc

CHUNK = 1 << 20


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def chunks(pattern, total):
    for offset in range(0, total, CHUNK):
        n = min(CHUNK, total - offset)
        chunk = bytearray(pattern[:n])
        if n >= 8:
            chunk[0:8] = struct.pack('<Q', offset)
        yield offset, bytes(chunk)


def skip_varint(view, at):
    while view[at] & 0x80:
        at += 1
    return at + 1


def main():
    address, total, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    verify = '--no-verify' not in sys.argv[4:]
    pattern = random.Random(seed).randbytes(CHUNK)

    started = time.perf_counter()
    hasher = hashlib.sha256()
    for _, chunk in chunks(pattern, total):
        hasher.update(chunk)
    digest = hasher.hexdigest()
    hash_ms = (time.perf_counter() - started) * 1000

    channel = grpc.insecure_channel(address, options=[('grpc.max_send_message_length', -1), ('grpc.max_receive_message_length', -1)])
    identity = lambda message: message  # noqa: E731 (requests and responses are bytes, encoded here)
    write = channel.stream_unary('/google.bytestream.ByteStream/Write', request_serializer=identity, response_deserializer=identity)
    read = channel.unary_stream('/google.bytestream.ByteStream/Read', request_serializer=identity, response_deserializer=identity)

    name = f'uploads/{uuid.uuid4()}/blobs/{digest}/{total}'.encode()

    def requests():
        for offset, chunk in chunks(pattern, total):
            parts = [field_bytes(1, name)] if offset == 0 else [b'\x10', varint(offset)]
            if offset + len(chunk) >= total:
                parts.append(b'\x18\x01')
            parts.append(field_bytes(10, chunk))
            yield b''.join(parts)

    started = time.perf_counter()
    response = write(requests())
    write_ms = (time.perf_counter() - started) * 1000
    view = memoryview(response)
    committed = 0
    if len(view) > 0 and view[0] == 0x08:  # committed_size = 1
        shift, at = 0, 1
        while True:
            committed |= (view[at] & 0x7F) << shift
            shift, at = shift + 7, at + 1
            if not view[at - 1] & 0x80:
                break

    started = time.perf_counter()
    hasher = hashlib.sha256()
    read_bytes = 0
    for message in read(field_bytes(1, f'blobs/{digest}/{total}'.encode())):
        view = memoryview(message)
        if len(view) == 0:
            continue
        if view[0] != 0x52:
            raise SystemExit(f'unexpected ReadResponse field tag {view[0]}')
        data = view[skip_varint(view, 1):]
        read_bytes += len(data)
        hasher.update(data)
    read_ms = (time.perf_counter() - started) * 1000
    if verify and (hasher.hexdigest() != digest or read_bytes != total):
        raise SystemExit(f'Read returned {read_bytes} bytes hashing to {hasher.hexdigest()}, expected {total} bytes, {digest}')
    channel.close()
    print(json.dumps({'hash_ms': hash_ms, 'write_ms': write_ms, 'read_ms': read_ms, 'committed': committed, 'read_bytes': read_bytes}))


if __name__ == '__main__':
    main()
