/** Plain-text tables and the small formats the CLI's listings share (jobs, workers, platforms, collect). */

/** Columns padded to their widest cell, two spaces apart, one line per row (header first), each ending in a newline. */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((row) => `${row.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()}\n`).join('');
}

/** `suite=stream,isa=x86_64`. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}
