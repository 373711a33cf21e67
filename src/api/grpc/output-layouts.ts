/**
 * The output layout of an action by its digest, for answering action-cache lookups (whose entries hold
 * root-relative paths; see action-result.ts). Read from the Action and Command in the CAS, and remembered:
 * Execute and UpdateActionResult record what they already decoded, so a hot cache hit costs no blob read.
 */
import type { BlobStore } from '../../cas/blob-store.js';
import type { Digest } from '../../core/digest.js';
import { formatDigest } from '../../core/digest.js';
import { isRemexError } from '../../core/errors.js';
import type { OutputLayout } from './action-result.js';
import { layoutOfCommand } from './action-result.js';
import { readAction, readCommand } from './action-blobs.js';

export const DEFAULT_LAYOUT_CACHE_ENTRIES = 100_000;

export class OutputLayouts {
  private readonly known = new Map<string, OutputLayout>();

  constructor(
    private readonly blobs: BlobStore,
    private readonly capacity = DEFAULT_LAYOUT_CACHE_ENTRIES,
  ) {}

  remember(actionDigest: Digest, layout: OutputLayout): void {
    const key = formatDigest(actionDigest);
    this.known.delete(key);
    this.known.set(key, layout);
    // A Map iterates in insertion order: the first key is the least recently used.
    if (this.known.size > this.capacity) this.known.delete(this.known.keys().next().value as string);
  }

  /** The layout, or undefined when the Action or its Command is not in the CAS (or is not one). */
  async forAction(actionDigest: Digest): Promise<OutputLayout | undefined> {
    const key = formatDigest(actionDigest);
    const hit = this.known.get(key);
    if (hit) {
      this.remember(actionDigest, hit);
      return hit;
    }
    try {
      const action = await readAction(this.blobs, actionDigest);
      if (!action?.command_digest) return undefined;
      const command = await readCommand(this.blobs, { hash: action.command_digest.hash, sizeBytes: action.command_digest.size_bytes });
      if (!command) return undefined;
      const layout = layoutOfCommand(command);
      this.remember(actionDigest, layout);
      return layout;
    } catch (err) {
      if (isRemexError(err, 'INVALID_ARGUMENT') || isRemexError(err, 'RESOURCE_EXHAUSTED')) return undefined;
      throw err;
    }
  }
}
