/**
 * `s3://bucket/prefix?endpoint=…&region=…&forcePathStyle=…`, the form `remex serve --blobs` takes, parsed
 * into {@link S3Location}. Credentials never go in the URL: they come from the standard AWS sources
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE, instance or container roles).
 * Error messages never repeat the URL's user-info, so a secret pasted into it by mistake is not echoed.
 */
import { InvalidArgumentError } from '../../core/errors.js';

/** Where blobs live in S3: everything of S3BlobStoreOptions but the limits and tuning. */
export interface S3Location {
  bucket: string;
  /** Key prefix; blobs are at `<prefix>sha256/<hash>`. A non-empty prefix is a "folder": it ends in `/`. */
  prefix?: string;
  /** An S3-compatible endpoint, e.g. `http://127.0.0.1:9000`; omitted for AWS itself. */
  endpoint?: string;
  /** Signing region; default: AWS_REGION / the AWS config, else `us-east-1` when an endpoint is given. */
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`); default true when an endpoint is given, else false. */
  forcePathStyle?: boolean;
}

/** The query parameters an `s3://` URL may carry. */
export const S3_URL_PARAMS = ['endpoint', 'region', 'forcePathStyle'] as const;

/** Bucket names as S3 and its look-alikes accept them (AWS itself is stricter: 3-63 lower-case characters). */
const BUCKET_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

export function parseS3Url(text: string): S3Location {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidArgumentError('blob store URL is not a URL; expected s3://bucket/prefix?endpoint=…');
  }
  if (url.protocol !== 's3:') throw new InvalidArgumentError(`blob store URL must start with s3://, got ${url.protocol}//`);
  if (url.username !== '' || url.password !== '') {
    throw new InvalidArgumentError(
      'an s3:// URL must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) instead',
    );
  }
  if (url.port !== '') throw new InvalidArgumentError('an s3:// URL names a bucket, not a host:port; put the server in ?endpoint=');
  if (url.hash !== '') throw new InvalidArgumentError('an s3:// URL takes no #fragment');
  const bucket = decodeURIComponent(url.hostname);
  if (!BUCKET_RE.test(bucket)) throw new InvalidArgumentError(`s3:// URL: ${JSON.stringify(bucket)} is not a bucket name`);

  const location: S3Location = { bucket };
  const prefix = normalizePrefix(decodeURIComponent(url.pathname));
  if (prefix !== '') location.prefix = prefix;

  const seen = new Set<string>();
  for (const [name, value] of url.searchParams) {
    if (!(S3_URL_PARAMS as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`s3:// URL: unknown parameter ${JSON.stringify(name)} (known: ${S3_URL_PARAMS.join(', ')})`);
    }
    if (seen.has(name)) throw new InvalidArgumentError(`s3:// URL: parameter ${name} given twice`);
    seen.add(name);
    switch (name) {
      case 'endpoint':
        location.endpoint = parseEndpoint(value);
        break;
      case 'region':
        if (!/^[a-z0-9-]{1,64}$/.test(value)) throw new InvalidArgumentError(`s3:// URL: ${JSON.stringify(value)} is not a region name`);
        location.region = value;
        break;
      case 'forcePathStyle':
        location.forcePathStyle = parseBoolean(value);
        break;
    }
  }
  return location;
}

/** `''` stays empty; anything else loses leading slashes and gains one trailing slash. */
export function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? '').replace(/^\/+/, '');
  if (trimmed === '') return '';
  if (trimmed.split('/').some((part, i, all) => (part === '' && i !== all.length - 1) || part === '.' || part === '..')) {
    throw new InvalidArgumentError(`S3 key prefix ${JSON.stringify(prefix)} has an empty, "." or ".." segment`);
  }
  return trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

/** An http(s) URL with no user-info, path or query: `http://127.0.0.1:9000`. */
export function parseEndpoint(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError('S3 endpoint is not a URL; expected e.g. http://127.0.0.1:9000');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError('S3 endpoint must be an http:// or https:// URL');
  if (url.username !== '' || url.password !== '') {
    throw new InvalidArgumentError('S3 endpoint must not carry credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead');
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new InvalidArgumentError('S3 endpoint must be scheme://host[:port] only');
  }
  return `${url.protocol}//${url.host}`;
}

function parseBoolean(value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new InvalidArgumentError(`s3:// URL: forcePathStyle must be true or false, got ${JSON.stringify(value)}`);
}
