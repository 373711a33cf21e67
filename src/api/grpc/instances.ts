/**
 * REAPI instance names. remex uses them to keep action caches and queues apart (the CAS is shared: it is
 * addressed by content). By default any well-formed name is accepted, '' included; a server configured
 * with a list accepts only those.
 */
import { InvalidArgumentError } from '../../core/errors.js';

/** Path segments REAPI reserves, so resource names stay parseable (`{instance}/blobs/…`). */
export const RESERVED_SEGMENTS: ReadonlySet<string> = new Set(['blobs', 'uploads', 'actions', 'actionResults', 'operations', 'capabilities', 'compressed-blobs']);

const MAX_INSTANCE_NAME_BYTES = 1024;

/** Whether `name` is a well-formed instance name: '' or '/'-separated non-empty segments, none reserved. */
export function instanceNameProblem(name: string): string | undefined {
  if (name === '') return undefined;
  if (Buffer.byteLength(name, 'utf8') > MAX_INSTANCE_NAME_BYTES) return `is longer than ${MAX_INSTANCE_NAME_BYTES} bytes`;
  if (name.includes('\0')) return 'contains NUL';
  for (const segment of name.split('/')) {
    if (segment === '') return 'has an empty path segment';
    if (segment === '.' || segment === '..') return `has a "${segment}" segment`;
    if (RESERVED_SEGMENTS.has(segment)) return `uses the reserved segment "${segment}"`;
  }
  return undefined;
}

export class InstanceNames {
  private readonly allowed: ReadonlySet<string> | undefined;

  /** `names` undefined: any well-formed name. Otherwise exactly these (each must be well-formed). */
  constructor(names?: readonly string[]) {
    if (names) {
      for (const name of names) {
        const problem = instanceNameProblem(name);
        if (problem) throw new InvalidArgumentError(`instance name ${JSON.stringify(name)} ${problem}`);
      }
      this.allowed = new Set(names);
    }
  }

  /** The instance to use for a request naming `name`; InvalidArgumentError for an unknown or malformed one. */
  check(name: string): string {
    const problem = instanceNameProblem(name);
    if (problem) throw new InvalidArgumentError(`instance name ${JSON.stringify(name)} ${problem}`);
    if (this.allowed && !this.allowed.has(name)) {
      throw new InvalidArgumentError(`unknown instance name ${JSON.stringify(name)}; this server serves ${[...this.allowed].map((n) => JSON.stringify(n)).join(', ')}`, {
        details: { instance: name, known: [...this.allowed] },
      });
    }
    return name;
  }
}
