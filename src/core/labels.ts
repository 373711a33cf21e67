/**
 * Labels: the operator's and the user's names for things (`pool=arm-spot` on a worker, `suite=stream` on a
 * job), by which they are selected, summed and scaled. One definition of what a label may be, checked
 * wherever labels come in (flags, the HTTP API, the worker protocol) and trusted by the stores.
 */
import { InvalidArgumentError } from './errors.js';

/** A letter, then letters, digits, `_ . / -` (`app.kubernetes.io/version`): safe in a JSON path and a metric. */
export const LABEL_NAME = /^[A-Za-z][A-Za-z0-9_./-]{0,62}$/;
export const MAX_LABEL_VALUE_CHARS = 256;
export const MAX_LABELS = 32;

export type Labels = Readonly<Record<string, string>>;

/** Throws InvalidArgumentError naming the first label that is not one, or `what` when there are too many. */
export function checkLabels(labels: Labels, what = 'labels'): void {
  const names = Object.keys(labels);
  if (names.length > MAX_LABELS) throw new InvalidArgumentError(`${what}: at most ${MAX_LABELS} labels`);
  for (const name of names) {
    if (!LABEL_NAME.test(name)) throw new InvalidArgumentError(`${what}: label name ${JSON.stringify(name)} is not a letter followed by letters, digits, _ . / - (up to 63)`);
    const value = labels[name];
    if (typeof value !== 'string') throw new InvalidArgumentError(`${what}: label ${name} has no text value`);
    if (value.length > MAX_LABEL_VALUE_CHARS) throw new InvalidArgumentError(`${what}: label ${name} is longer than ${MAX_LABEL_VALUE_CHARS} characters`);
  }
}

/** `NAME=VALUE` texts (flags, query parameters) → labels, checked; a repeated name is refused. */
export function parseLabels(texts: readonly string[], what = '--label'): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const text of texts) {
    const eq = text.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`${what} ${JSON.stringify(text)}: expected NAME=VALUE`);
    const name = text.slice(0, eq);
    if (Object.hasOwn(labels, name)) throw new InvalidArgumentError(`${what} ${name} is given twice`);
    labels[name] = text.slice(eq + 1);
  }
  checkLabels(labels, what);
  return labels;
}
