/**
 * REAPI ActionResult ↔ remex RunReport, the one mapping between the two.
 *
 * Paths differ in base: a RunReport's output paths are relative to the input root (as the worker collects
 * them), an ActionResult's are relative to the Command's working directory. Each direction therefore takes
 * the {@link OutputLayout} of the action's Command. A pre-v2.1 Command also says which outputs it wanted
 * as files and which as directories; an output of the other kind is left out of the ActionResult.
 *
 * Exit status: REAPI has only an exit code, so a run ended by a signal reports 128 + the signal number, as
 * shells do.
 */
import { constants } from 'node:os';
import type { Digest } from '../../core/digest.js';
import { validateDigest } from '../../core/digest.js';
import { InvalidArgumentError } from '../../core/errors.js';
import type { OutputDirectory, OutputStream, RunReport } from '../../core/model.js';
import { validateInputPath } from '../../cas/tree.js';
import { fromProtoDigest, toProtoDigest } from './digests.js';
import type { ActionResult, ActionResultOut, CommandOut, ExecutedActionMetadata, Timestamp } from './messages.js';

/** Where an action's outputs live and, for a pre-v2.1 Command, of which kind each was asked for. */
export interface OutputLayout {
  /** The Command's working directory, relative to the input root ('' for the root). */
  workingDirectory: string;
  /** Paths asked for as files (pre-v2.1 `output_files`); undefined when `output_paths` leaves the kind open. */
  files?: ReadonlySet<string>;
  /** Paths asked for as directories (pre-v2.1 `output_directories`); undefined likewise. */
  directories?: ReadonlySet<string>;
}

/** The layout of a Command. */
export function layoutOfCommand(command: CommandOut): OutputLayout {
  if (command.output_paths.length > 0 || (command.output_files.length === 0 && command.output_directories.length === 0)) {
    return { workingDirectory: command.working_directory };
  }
  return { workingDirectory: command.working_directory, files: new Set(command.output_files), directories: new Set(command.output_directories) };
}

/** The output paths a Command asks for, whichever generation of fields it uses, sorted and unique. */
export function outputPathsOf(command: CommandOut): string[] {
  const paths = command.output_paths.length > 0 ? command.output_paths : [...command.output_files, ...command.output_directories];
  return [...new Set(paths)].sort();
}

/** Timing of the job that produced a result, for ExecutedActionMetadata; absent for a client's upload. */
export interface ResultTiming {
  queuedAtMs: number;
  startedAtMs: number | null;
  completedAtMs: number | null;
}

export interface ActionResultOptions {
  inlineStdout?: boolean;
  inlineStderr?: boolean;
  timing?: ResultTiming;
}

/** The ActionResult a client sees for a report. */
export function toActionResult(report: RunReport, layout: OutputLayout, opts: ActionResultOptions = {}): ActionResult {
  const outputFiles = report.outputFiles.flatMap((f) => {
    const path = toLayoutPath(f.path, layout.workingDirectory);
    if (path === undefined || (layout.files && !layout.files.has(path))) return [];
    return [{ path, digest: toProtoDigest(f.digest), is_executable: f.isExecutable }];
  });
  const outputDirectories = (report.outputDirectories ?? []).flatMap((d) => {
    const path = toLayoutPath(d.path, layout.workingDirectory);
    if (path === undefined || (layout.directories && !layout.directories.has(path))) return [];
    return [{ path, tree_digest: toProtoDigest(d.treeDigest) }];
  });
  return {
    output_files: outputFiles,
    output_directories: outputDirectories,
    exit_code: exitCodeOf(report),
    stdout_digest: toProtoDigest(report.stdout.digest),
    stderr_digest: toProtoDigest(report.stderr.digest),
    ...(opts.inlineStdout && report.stdout.inlineBase64 !== null ? { stdout_raw: Buffer.from(report.stdout.inlineBase64, 'base64') } : {}),
    ...(opts.inlineStderr && report.stderr.inlineBase64 !== null ? { stderr_raw: Buffer.from(report.stderr.inlineBase64, 'base64') } : {}),
    execution_metadata: metadataOf(report, opts.timing),
  };
}

/** The bytes of stdout and stderr a client's ActionResult stands for, as stored (see {@link fromActionResult}). */
export interface UploadedStreams {
  stdout: { digest: Digest; inline: Buffer | null };
  stderr: { digest: Digest; inline: Buffer | null };
}

/**
 * The report to cache for an ActionResult a client uploads. Paths and digests are validated here
 * (InvalidArgumentError); output symlinks are refused, for remex's results cannot hold them. Whether the
 * blobs exist is the caller's check.
 */
export function fromActionResult(result: ActionResultOut, layout: OutputLayout, streams: UploadedStreams): RunReport {
  const symlinks = result.output_symlinks.length + result.output_file_symlinks.length + result.output_directory_symlinks.length;
  if (symlinks > 0) throw new InvalidArgumentError('ActionResult has output symlinks, which this server cannot store');
  const outputFiles = result.output_files.map((f, i) => {
    validateInputPath(f.path);
    return { path: toRootPath(f.path, layout.workingDirectory), digest: fromProtoDigest(f.digest, `output_files[${i}].digest`), isExecutable: f.is_executable };
  });
  const outputDirectories: OutputDirectory[] = result.output_directories.map((d, i) => {
    if (d.path !== '') validateInputPath(d.path);
    return { path: toRootPath(d.path, layout.workingDirectory), treeDigest: fromProtoDigest(d.tree_digest, `output_directories[${i}].tree_digest`) };
  });
  const meta = result.execution_metadata;
  const start = meta?.execution_start_timestamp ? millisOf(meta.execution_start_timestamp) : null;
  const end = meta?.execution_completed_timestamp ? millisOf(meta.execution_completed_timestamp) : null;
  return {
    exitCode: result.exit_code,
    signal: null,
    timedOut: false,
    limitExceeded: null,
    stdout: streamOf(streams.stdout),
    stderr: streamOf(streams.stderr),
    outputFiles,
    outputDirectories,
    wallTimeMs: start !== null && end !== null ? Math.max(0, end - start) : 0,
    cpuTimeMs: 0,
    maxRssKb: 0,
    emulated: false,
    worker: meta?.worker ?? '',
  };
}

/** Every blob a report names directly (not the files inside its output trees). */
export function blobsOfReport(report: RunReport): Digest[] {
  return [report.stdout.digest, report.stderr.digest, ...report.outputFiles.map((f) => f.digest), ...(report.outputDirectories ?? []).map((d) => d.treeDigest)];
}

/** REAPI's int32 exit code: the exit status, or 128 + signal number for a run a signal ended. */
export function exitCodeOf(report: RunReport): number {
  if (report.exitCode !== null) return report.exitCode;
  const signal = report.signal ? (constants.signals as Record<string, number | undefined>)[report.signal] : undefined;
  return signal !== undefined ? 128 + signal : -1;
}

/** A root-relative path as seen from the working directory; undefined when it lies outside. */
function toLayoutPath(rootPath: string, workingDirectory: string): string | undefined {
  if (workingDirectory === '') return rootPath;
  if (rootPath === workingDirectory) return '';
  return rootPath.startsWith(`${workingDirectory}/`) ? rootPath.slice(workingDirectory.length + 1) : undefined;
}

function toRootPath(path: string, workingDirectory: string): string {
  if (workingDirectory === '') return path;
  return path === '' ? workingDirectory : `${workingDirectory}/${path}`;
}

function streamOf(s: { digest: Digest; inline: Buffer | null }): OutputStream {
  const digest = validateDigest(s.digest);
  return { digest, inlineBase64: s.inline ? s.inline.toString('base64') : null, totalBytes: digest.sizeBytes, truncated: false };
}

function metadataOf(report: RunReport, timing: ResultTiming | undefined): ExecutedActionMetadata {
  const meta: ExecutedActionMetadata = { worker: report.worker };
  if (!timing) return meta;
  meta.queued_timestamp = timestampOf(timing.queuedAtMs);
  if (timing.startedAtMs !== null) {
    meta.worker_start_timestamp = timestampOf(timing.startedAtMs);
    meta.execution_start_timestamp = timestampOf(timing.startedAtMs);
  }
  if (timing.completedAtMs !== null) {
    meta.worker_completed_timestamp = timestampOf(timing.completedAtMs);
    meta.execution_completed_timestamp = timestampOf(timing.completedAtMs);
  }
  // The worker's own marks, where it reported them: inputs fetched, the program's run, outputs uploaded.
  const times = report.times;
  if (times) {
    meta.input_fetch_start_timestamp = timestampOf(times.stagingStartedAtMs);
    meta.input_fetch_completed_timestamp = timestampOf(times.stagedAtMs);
    meta.execution_start_timestamp = timestampOf(times.programStartedAtMs);
    meta.execution_completed_timestamp = timestampOf(times.programEndedAtMs);
    meta.output_upload_start_timestamp = timestampOf(times.programEndedAtMs);
    meta.output_upload_completed_timestamp = timestampOf(times.outputsStoredAtMs);
  }
  return meta;
}

function timestampOf(ms: number): Timestamp {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

function millisOf(t: { seconds: number | string; nanos: number }): number {
  return Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
}
