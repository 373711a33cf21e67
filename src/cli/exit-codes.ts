/**
 * Exit codes of `remex run`. The program's own exit code passes through; remex's outcomes use the codes
 * timeout(1) and shells made familiar, so scripts can tell them apart.
 */
export const EXIT_TIMED_OUT = 124;
/** remex itself failed: bad input, server unreachable, the job could not run, cancelled. */
export const EXIT_REMEX_FAILURE = 125;
/** A program ended by signal N exits 128 + N, as in a shell. */
export const EXIT_SIGNAL_BASE = 128;
/**
 * `remex worker` could not kill its runs (no slot left in service): it left the server and exits so its
 * supervisor replaces it. EX_SOFTWARE of sysexits.h.
 */
export const EXIT_WORKER_UNFIT = 70;
/**
 * `remex worker` was told to stop (SIGTERM, SIGINT) and its server could not be reached: it stopped its runs
 * and left without committing them (their leases expire and the jobs are requeued). EX_UNAVAILABLE of sysexits.h.
 */
export const EXIT_WORKER_SERVER_UNREACHABLE = 69;
