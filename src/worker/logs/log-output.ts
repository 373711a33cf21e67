/**
 * A long job's stdout or stderr for its result: the log file the sandbox wrote (up to the job's ceiling),
 * put into the CAS streamed from the file — never held whole — and inline too when small.
 */
import { readFile } from 'node:fs/promises';
import type { BlobStore } from '../../cas/blob-store.js';
import { digestOf } from '../../core/digest.js';
import type { OutputStream } from '../../core/model.js';

export async function storeLogFile(blobs: BlobStore, path: string, totalBytes: number, truncated: boolean, inlineLimit: number): Promise<OutputStream> {
  let digest;
  try {
    digest = await blobs.putFile(path);
  } catch (err) {
    // The program never started (no file was made): an empty stream.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    digest = digestOf(Buffer.alloc(0));
  }
  const inline = digest.sizeBytes <= inlineLimit ? (digest.sizeBytes === 0 ? Buffer.alloc(0) : await readFile(path)) : null;
  return { digest, inlineBase64: inline ? inline.toString('base64') : null, totalBytes, truncated };
}
