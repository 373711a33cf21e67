/**
 * Defaults more than one layer needs, as plain numbers in a module that loads nothing: the CLI shows them in
 * its help without loading the server, and the scheduler and the gRPC door take them from here.
 */
export const DEFAULT_HTTP_PORT = 8080;
export const DEFAULT_GRPC_PORT = 8980;
/** A lease's length; a worker silent this long loses its jobs. */
export const DEFAULT_LEASE_TIMEOUT_MS = 30_000;
/** Attempts a job gets when its workers are lost, before it fails as LOST. */
export const DEFAULT_MAX_ATTEMPTS = 3;
