/**
 * An S3-compatible server for tests.
 *
 * `REMEX_TEST_S3_URL` names a real one to use (`s3://bucket/prefix?endpoint=http://127.0.0.1:9000`,
 * credentials from the standard AWS variables); each store then works under its own fresh prefix, which
 * its cleanup empties. Otherwise this starts s3rver on a free loopback port, with a private directory and
 * a fresh bucket. s3rver is an S3-compatible server implementation in plain JavaScript (npm), used because
 * MinIO is not packaged for Debian: it speaks the S3 REST API the SDK uses (signature v4, PUT, GET with
 * ranges, HEAD, COPY, DELETE, list), but it is not S3, and one of its shortcuts is fixed here:
 *
 * s3rver writes an object in place while receiving it, so a reader could see a partly written object,
 * concurrent writers of one key overwrite each other's half-written file, and an upload the client aborts
 * stays behind, half written. S3 shows none of these: an object appears whole or not at all. So that the tests check remex rather than the stand-in, this helper
 * makes s3rver's writes atomic (written aside, then renamed into place); nothing else is changed.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import type { S3BlobStoreOptions } from '../../src/cas/s3/s3-blob-store.js';
import { parseS3Url } from '../../src/cas/s3/s3-url.js';

export interface TestS3 {
  /** `http://127.0.0.1:<port>` (or the endpoint of REMEX_TEST_S3_URL; undefined there means AWS itself). */
  endpoint: string | undefined;
  bucket: string;
  region: string | undefined;
  /** s3rver's fixed key pair; undefined with REMEX_TEST_S3_URL (the default AWS chain applies). */
  credentials: S3ClientConfig['credentials'] | undefined;
  /** The server as an `s3://` URL, with `prefix` as its path. */
  url(prefix?: string): string;
  /** Options for an S3BlobStore on this server under a fresh, empty prefix. */
  storeOptions(maxBlobBytes: number): S3BlobStoreOptions & { prefix: string };
  /** An SDK client on this server, configured as the store configures its own, for looking behind its back. */
  client: S3Client;
  /** Every key under `prefix`. */
  listKeys(prefix: string): Promise<string[]>;
  /** Deletes every object under `prefix`. */
  deletePrefix(prefix: string): Promise<void>;
  stop(): Promise<void>;
}

/** s3rver's built-in account. */
const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export async function startS3(): Promise<TestS3> {
  const external = process.env.REMEX_TEST_S3_URL;
  if (external) {
    const location = parseS3Url(external);
    return handle({ ...location, basePrefix: location.prefix ?? '', credentials: undefined, stop: async () => {} });
  }
  const directory = await mkdtemp(join(tmpdir(), 'remex-s3rver-'));
  const bucket = 'remex-test';
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  makeWritesAtomic(server);
  const address = await server.run();
  return handle({
    bucket,
    endpoint: `http://127.0.0.1:${address.port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    basePrefix: '',
    credentials: S3RVER_CREDENTIALS,
    stop: async () => {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  });
}

interface Setup {
  bucket: string;
  endpoint?: string | undefined;
  region?: string | undefined;
  forcePathStyle?: boolean | undefined;
  basePrefix: string;
  credentials: S3ClientConfig['credentials'] | undefined;
  stop(): Promise<void>;
}

function handle(setup: Setup): TestS3 {
  const region = setup.region ?? process.env.AWS_REGION ?? (setup.endpoint ? 'us-east-1' : undefined);
  const client = new S3Client({
    ...(setup.endpoint ? { endpoint: setup.endpoint } : {}),
    ...(region ? { region } : {}),
    ...(setup.credentials ? { credentials: setup.credentials } : {}),
    forcePathStyle: setup.forcePathStyle ?? setup.endpoint !== undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const listKeys = async (prefix: string): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: setup.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  };
  return {
    endpoint: setup.endpoint,
    bucket: setup.bucket,
    region,
    credentials: setup.credentials,
    client,
    url: (prefix = '') => {
      const params = new URLSearchParams();
      if (setup.endpoint) params.set('endpoint', setup.endpoint);
      if (region) params.set('region', region);
      if (setup.forcePathStyle !== undefined) params.set('forcePathStyle', String(setup.forcePathStyle));
      const query = params.toString();
      return `s3://${setup.bucket}/${setup.basePrefix}${prefix}${query ? `?${query}` : ''}`;
    },
    storeOptions: (maxBlobBytes) => ({
      bucket: setup.bucket,
      prefix: `${setup.basePrefix}test-${randomUUID()}/`,
      ...(setup.endpoint ? { endpoint: setup.endpoint } : {}),
      ...(region ? { region } : {}),
      ...(setup.forcePathStyle !== undefined ? { forcePathStyle: setup.forcePathStyle } : {}),
      ...(setup.credentials ? { credentials: setup.credentials } : {}),
      maxBlobBytes,
    }),
    listKeys,
    deletePrefix: async (prefix) => {
      for (const key of await listKeys(prefix)) await client.send(new DeleteObjectCommand({ Bucket: setup.bucket, Key: key }));
    },
    stop: async () => {
      client.destroy();
      await setup.stop();
    },
  };
}

/** The parts of s3rver's filesystem store that the atomic-write fix touches. */
interface S3rverStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  putObject(object: { bucket: string; key: string }): Promise<unknown>;
  copyObject(srcBucket: string, srcKey: string, destBucket: string, destKey: string, replacementMetadata: unknown): Promise<unknown>;
}

/** A directory beside the buckets (not a bucket: s3rver lists only those it created) where writes are staged. */
const STAGING = '.remex-staging';

/** Makes s3rver's object writes whole-or-nothing: each is written under a staging key, then renamed into place. */
function makeWritesAtomic(server: S3rver): void {
  const store = (server as unknown as { store: S3rverStore }).store;
  const putObject = store.putObject.bind(store);
  const copyObject = store.copyObject.bind(store);

  async function publish(stagingKey: string, bucket: string, key: string): Promise<void> {
    // Metadata first, the object file last: s3rver sees an object when its object file exists.
    for (const resource of ['metadata.json', 'object.md5', 'object']) {
      const from = store.getResourcePath(STAGING, stagingKey, resource);
      const to = store.getResourcePath(bucket, key, resource);
      if (resource !== 'object' && !(await exists(from))) continue;
      // s3rver removes the directories a delete leaves empty, which can race with this rename: try again.
      for (let attempt = 1; ; attempt++) {
        await mkdir(dirname(to), { recursive: true });
        try {
          await rename(from, to);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5 || !(await exists(from))) throw err;
        }
      }
    }
  }

  store.putObject = async (object) => {
    const staged = Object.assign(Object.create(Object.getPrototypeOf(object) as object) as typeof object, object, {
      bucket: STAGING,
      key: randomUUID(),
    });
    const result = await putObject(staged);
    await publish(staged.key, object.bucket, object.key);
    return result;
  };

  store.copyObject = async (srcBucket, srcKey, destBucket, destKey, replacementMetadata) => {
    const stagingKey = randomUUID();
    const result = await copyObject(srcBucket, srcKey, STAGING, stagingKey, replacementMetadata);
    await publish(stagingKey, destBucket, destKey);
    return result;
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
