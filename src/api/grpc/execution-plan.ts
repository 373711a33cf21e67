/**
 * From a REAPI Action digest to remex's ExecutionSpec: read the Action and Command from the CAS, validate
 * them, map timeout and platform, and check that the input tree is all there. Every problem is reported
 * before anything is queued: missing blobs as one MissingBlobsError (FAILED_PRECONDITION with MISSING
 * violations), a malformed request as INVALID_ARGUMENT, a platform remex cannot name as
 * FAILED_PRECONDITION.
 */
import type { BlobStore } from '../../cas/blob-store.js';
import { validateInputPath, walkTree } from '../../cas/tree.js';
import { checkCommandLine } from '../../core/command-line.js';
import type { Digest } from '../../core/digest.js';
import { InvalidArgumentError, MissingBlobsError } from '../../core/errors.js';
import type { ExecutionSpec } from '../../core/model.js';
import type { ExecutionPolicy } from '../execution-request.js';
import { readAction, readCommand } from './action-blobs.js';
import type { OutputLayout } from './action-result.js';
import { layoutOfCommand, outputPathsOf } from './action-result.js';
import { fromProtoDigest } from './digests.js';
import type { ActionOut, CommandOut } from './messages.js';
import { platformOfProperties } from './platform-properties.js';

export interface PlanDeps {
  blobs: BlobStore;
  policy: ExecutionPolicy;
  /** Platform of an action that names none. */
  defaultPlatform: string;
}

export interface ExecutionPlan {
  spec: ExecutionSpec;
  layout: OutputLayout;
}

const MAX_OUTPUT_PATHS = 10_000;

/** Reads and validates the action; MissingBlobsError names the Action, or the Command and input root. */
export async function planExecution(actionDigest: Digest, deps: PlanDeps): Promise<ExecutionPlan> {
  const action = await readAction(deps.blobs, actionDigest);
  if (!action) throw new MissingBlobsError([actionDigest]);
  const commandDigest = fromProtoDigest(action.command_digest, 'Action.command_digest');
  const inputRootDigest = fromProtoDigest(action.input_root_digest, 'Action.input_root_digest');
  const command = await readCommand(deps.blobs, commandDigest);
  if (!command) throw new MissingBlobsError([commandDigest, ...(await deps.blobs.findMissing([inputRootDigest]))]);
  return { spec: specOf(action, command, inputRootDigest, deps), layout: layoutOfCommand(command) };
}

/**
 * Checks the input tree: every Directory and file blob present (MissingBlobsError), every Directory
 * well-formed and safe, and the working directory one of its directories.
 */
export async function checkInputs(spec: ExecutionSpec, blobs: BlobStore): Promise<void> {
  const listing = await walkTree(spec.inputRootDigest, blobs);
  const missing = await blobs.findMissing(listing.files.map((f) => f.digest));
  if (missing.length > 0) throw new MissingBlobsError(missing);
  const wd = spec.command.workingDirectory;
  if (wd !== '' && !listing.directories.includes(wd)) {
    throw new InvalidArgumentError(`working_directory ${JSON.stringify(wd)} is not a directory of the input tree`);
  }
}

function specOf(action: ActionOut, command: CommandOut, inputRootDigest: Digest, deps: PlanDeps): ExecutionSpec {
  if (command.arguments.length === 0 || command.arguments[0] === '') throw new InvalidArgumentError('Command.arguments is empty');
  if (command.arguments.some((a) => a.includes('\0'))) throw new InvalidArgumentError('Command.arguments contain a NUL byte');
  for (const { name, value } of command.environment_variables) {
    if (name === '' || name.includes('=') || name.includes('\0')) throw new InvalidArgumentError(`invalid environment variable name ${JSON.stringify(name)}`);
    if (value.includes('\0')) throw new InvalidArgumentError(`environment variable ${name} contains a NUL byte`);
  }
  checkCommandLine(command.arguments, command.environment_variables);
  if (command.output_node_properties.length > 0) {
    throw new InvalidArgumentError(`output node properties are not supported (asked for ${command.output_node_properties.join(', ')})`);
  }
  const outputPaths = outputPathsOf(command);
  if (outputPaths.length > MAX_OUTPUT_PATHS) throw new InvalidArgumentError(`more than ${MAX_OUTPUT_PATHS} output paths`);
  // '' names the working directory itself, which REAPI allows as an output directory.
  for (const path of outputPaths) if (path !== '') validateInputPath(path);
  if (command.working_directory !== '') validateInputPath(command.working_directory);

  const properties = (action.platform?.properties.length ? action.platform : command.platform)?.properties ?? [];
  return {
    platform: platformOfProperties(properties, deps.defaultPlatform),
    command: {
      arguments: command.arguments,
      environmentVariables: command.environment_variables.map(({ name, value }) => ({ name, value })),
      outputPaths,
      workingDirectory: command.working_directory,
    },
    inputRootDigest,
    stdinDigest: null,
    timeoutMs: timeoutOf(action, deps.policy),
    limits: { ...deps.policy.defaultLimits },
    doNotCache: action.do_not_cache,
  };
}

/** Action.timeout in milliseconds (rounded up); unset or zero means the server's default. */
function timeoutOf(action: ActionOut, policy: ExecutionPolicy): number {
  const t = action.timeout;
  if (!t || (Number(t.seconds) === 0 && t.nanos === 0)) return policy.defaultTimeoutMs;
  const seconds = Number(t.seconds);
  if (!Number.isSafeInteger(seconds) || seconds < 0 || t.nanos < 0 || t.nanos >= 1e9) throw new InvalidArgumentError('Action.timeout is not a valid positive duration');
  const ms = seconds * 1000 + Math.ceil(t.nanos / 1e6);
  if (ms > policy.maxTimeoutMs) throw new InvalidArgumentError(`Action.timeout ${ms} ms is above this server's maximum of ${policy.maxTimeoutMs} ms`);
  return ms;
}
