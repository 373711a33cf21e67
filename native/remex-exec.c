/*
 * remex-exec: the sandbox's spawner and the two small steps around bwrap in a run, in one program built
 * static (with musl where it can be), so no step loads a dynamic linker, probes the CPU or reads an
 * environment variable (docs/decisions/0015).
 *
 *   remex-exec launch [-w FILE VALUE]... [-r RESOURCE SOFT HARD]... [-x FD] [-d FROM TO]... -- PROGRAM [ARG]...
 *     Outside the sandbox, as the worker: writes each VALUE to its FILE in order (the run cgroup's
 *     limits, then "0" to its procs or tasks file, which moves this process into it), sets each
 *     rlimit, opens this program's own file at descriptor FD if asked, duplicates descriptor FROM at TO
 *     (so bwrap, which closes its own status descriptor in the sandbox, passes a copy in), then execs
 *     PROGRAM (bwrap), which inherits all of it. RESOURCE is core, cpu, fsize, nofile or nproc; SOFT and
 *     HARD are numbers or "unlimited". If any step fails, PROGRAM never runs and the exit status is 125.
 *
 *   remex-exec as [-s FD] UID GID COUNT [NAME=VALUE]... PROGRAM [ARG]...
 *     Inside the sandbox, as root with only the capabilities the switch needs, executed through
 *     /proc/self/fd/FD (so nothing is mounted for it): closes every descriptor above 2 (FD among them),
 *     drops supplementary groups, switches to GID then UID (which clears those capabilities), clears the
 *     inheritable set, installs a seccomp filter denying kernel keyrings and new user namespaces (see
 *     deny_shared_kernel_state), replaces the environment with the COUNT assignments and execs PROGRAM, looked up
 *     in that environment's PATH as env(1) does (a file without "#!" runs through /bin/sh). Nothing of the request reaches a privileged process: the assignments are
 *     arguments here and become the environment only after the switch. Exit status 125 if the switch
 *     fails, 127 if PROGRAM is not found, 126 if it cannot be run.
 *     With -s, it does not exec PROGRAM itself but forks it and waits, with every signal blocked (the
 *     run's SIGTERM, or a kill of the process group, is for the program), then writes one line to FD,
 *     `{ "remex-exit-code": N }` or `{ "remex-signal": N }`, and exits as a shell would (128 + N for a
 *     signal). bwrap reports only that shell-style number, in which an exit with 130 and a death by
 *     SIGINT look the same; the line tells them apart. The waiter switched uid without exec'ing, so it
 *     is not dumpable: the program, under the same uid, cannot reach FD through /proc or ptrace.
 *
 *   remex-exec spawner
 *     The sandbox spawner: a long-lived process that starts launchers for the server (see spawner.c).
 *
 * Messages go to standard error, which the worker captures as the run's.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remex-exec.h"

enum { SETUP_FAILED = 125, CANNOT_RUN = 126, NOT_FOUND = 127 };

static void fail(int status, const char *what, const char *detail) {
  if (detail) fprintf(stderr, "remex-exec: %s: %s\n", what, detail);
  else fprintf(stderr, "remex-exec: %s\n", what);
  exit(status);
}

static void usage(void) {
  fail(SETUP_FAILED, "usage: remex-exec launch [-w FILE VALUE]... [-r RESOURCE SOFT HARD]... [-x FD] -- PROGRAM [ARG]...\n"
                     "       remex-exec as [-s FD] UID GID COUNT [NAME=VALUE]... PROGRAM [ARG]...\n"
                     "       remex-exec spawner", NULL);
}

/* A whole decimal number that fits in `max`, or -1. */
static long long parse_number(const char *text, unsigned long long max) {
  if (*text < '0' || *text > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || value > max) return -1;
  return (long long)value;
}

static rlim_t parse_limit(const char *text) {
  if (strcmp(text, "unlimited") == 0) return RLIM_INFINITY;
  long long value = parse_number(text, LLONG_MAX);
  if (value < 0) fail(SETUP_FAILED, "not a limit", text);
  return (rlim_t)value;
}

static int resource_named(const char *name) {
  static const struct { const char *name; int resource; } known[] = {
    {"core", RLIMIT_CORE}, {"cpu", RLIMIT_CPU}, {"fsize", RLIMIT_FSIZE}, {"nofile", RLIMIT_NOFILE}, {"nproc", RLIMIT_NPROC},
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
    if (strcmp(known[i].name, name) == 0) return known[i].resource;
  }
  fail(SETUP_FAILED, "unknown resource", name);
  return -1;
}

/* The whole value in one write, as cgroup files want it; the write itself reports a refused value. */
static void write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(SETUP_FAILED, path, strerror(errno));
  size_t length = strlen(value);
  ssize_t written = write(fd, value, length);
  if (written < 0) fail(SETUP_FAILED, path, strerror(errno));
  if ((size_t)written != length) fail(SETUP_FAILED, path, "short write");
  if (close(fd) != 0) fail(SETUP_FAILED, path, strerror(errno));
}

/* A descriptor number above 2, or a usage failure naming it. */
static int parse_descriptor(const char *text) {
  long long fd = parse_number(text, INT_MAX);
  if (fd < 3) fail(SETUP_FAILED, "not a descriptor above 2", text);
  return (int)fd;
}

/* This program's file, open at `fd` without close-on-exec, for bwrap to execute inside the sandbox. */
static void open_self_at(const char *fd_text) {
  int fd = parse_descriptor(fd_text);
  int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (self < 0) fail(SETUP_FAILED, "/proc/self/exe", strerror(errno));
  if (self != fd) {
    if (dup2(self, fd) < 0) fail(SETUP_FAILED, "dup2", strerror(errno));
    close(self);
  } else if (fcntl(self, F_SETFD, 0) != 0) {
    fail(SETUP_FAILED, "fcntl", strerror(errno));
  }
}

int remex_close_from(int first) {
  if (syscall(SYS_close_range, (unsigned)first, ~0U, 0U) == 0) return 0;
  /* Kernels before 5.9: the open ones, from /proc (a loop up to the descriptor limit can be 500k calls). */
  DIR *listing = opendir("/proc/self/fd");
  if (!listing) return -1;
  for (int found = 1; found;) {
    /* Closing while listing can skip entries: list again until a pass finds nothing to close. */
    found = 0;
    rewinddir(listing);
    for (struct dirent *entry; (entry = readdir(listing)) != NULL;) {
      long long fd = parse_number(entry->d_name, INT_MAX);
      if (fd >= first && fd != dirfd(listing)) {
        close((int)fd);
        found = 1;
      }
    }
  }
  closedir(listing);
  return 0;
}

/* POSIX execvp's fallback, which musl's lacks: a file without "#!" that the kernel refuses runs as a script. */
static void exec_file(const char *path, char **argv) {
  execv(path, argv);
  if (errno != ENOEXEC) return;
  size_t count = 0;
  while (argv[count]) count++;
  char **script = calloc(count + 2, sizeof *script);
  if (!script) return;
  script[0] = "/bin/sh";
  script[1] = (char *)path;
  for (size_t i = 1; i <= count; i++) script[i + 1] = argv[i];
  execv(script[0], script);
  free(script);
  errno = ENOEXEC;
}

/* execvp as env(1) has it from glibc: PATH from the (new) environment, "/bin:/usr/bin" without one. */
static int exec_searching(char **argv) {
  const char *name = argv[0];
  if (strchr(name, '/')) {
    exec_file(name, argv);
    return errno;
  }
  const char *path = getenv("PATH");
  if (!path) path = "/bin:/usr/bin";
  size_t name_length = strlen(name);
  int denied = 0;
  for (const char *dir = path;; dir++) {
    const char *end = strchrnul(dir, ':');
    size_t dir_length = (size_t)(end - dir);
    char full[PATH_MAX];
    if (dir_length + 1 + name_length < sizeof full) {
      /* An empty entry is the working directory. */
      memcpy(full, dir_length ? dir : ".", dir_length ? dir_length : 1);
      size_t at = dir_length ? dir_length : 1;
      full[at++] = '/';
      memcpy(full + at, name, name_length + 1);
      exec_file(full, argv);
      switch (errno) {
        case EACCES:
          denied = 1;
          break;
        case ENOENT:
        case ENOTDIR:
        case ESTALE:
        case ENODEV:
        case ETIMEDOUT:
        case ENAMETOOLONG:
          break;
        default:
          return errno;
      }
    }
    if (*end == '\0') break;
    dir = end;
  }
  return denied ? EACCES : ENOENT;
}

static int launch(int argc, char **argv) {
  int i = 0;
  while (i < argc && strcmp(argv[i], "--") != 0) {
    if (strcmp(argv[i], "-w") == 0 && i + 2 < argc) {
      write_file(argv[i + 1], argv[i + 2]);
      i += 3;
    } else if (strcmp(argv[i], "-r") == 0 && i + 3 < argc) {
      struct rlimit limit = {.rlim_cur = parse_limit(argv[i + 2]), .rlim_max = parse_limit(argv[i + 3])};
      if (setrlimit(resource_named(argv[i + 1]), &limit) != 0) fail(SETUP_FAILED, argv[i + 1], strerror(errno));
      i += 4;
    } else if (strcmp(argv[i], "-x") == 0 && i + 1 < argc) {
      open_self_at(argv[i + 1]);
      i += 2;
    } else if (strcmp(argv[i], "-d") == 0 && i + 2 < argc) {
      /* dup2 leaves the copy without close-on-exec: PROGRAM inherits it. */
      if (dup2(parse_descriptor(argv[i + 1]), parse_descriptor(argv[i + 2])) < 0) fail(SETUP_FAILED, "dup2", strerror(errno));
      i += 3;
    } else {
      usage();
    }
  }
  if (i + 1 >= argc) usage();
  char **program = argv + i + 1;
  execv(program[0], program);
  fail(SETUP_FAILED, program[0], strerror(errno));
  return SETUP_FAILED;
}

/* The status of `child` as its one line, then this process's exit in the shell's convention. */
static int report_program_end(pid_t child, int status_fd) {
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) fail(SETUP_FAILED, "waitpid", strerror(errno));
  }
  char line[64];
  int length = WIFSIGNALED(status) ? snprintf(line, sizeof line, "{ \"remex-signal\": %d }\n", WTERMSIG(status))
                                   : snprintf(line, sizeof line, "{ \"remex-exit-code\": %d }\n", WEXITSTATUS(status));
  /* One short write is atomic on a pipe; a failed one only leaves the shell-style status to decode. */
  if (write(status_fd, line, (size_t)length) != length) fprintf(stderr, "remex-exec: cannot report the exit status: %s\n", strerror(errno));
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Runs PROGRAM, replacing this process, or (status_fd >= 0) as a child whose end is reported there. */
static int run_program(char **program, int status_fd) {
  sigset_t all, before;
  if (status_fd >= 0) {
    sigfillset(&all);
    if (sigprocmask(SIG_BLOCK, &all, &before) != 0) fail(SETUP_FAILED, "sigprocmask", strerror(errno));
    pid_t child = fork();
    if (child < 0) fail(SETUP_FAILED, "fork", strerror(errno));
    if (child > 0) return report_program_end(child, status_fd);
    /* The program gets the signal mask the sandbox gave; the status descriptor closes on exec. */
    if (sigprocmask(SIG_SETMASK, &before, NULL) != 0) _exit(SETUP_FAILED);
  }
  int error = exec_searching(program);
  fprintf(stderr, "%s: %s\n", program[0], strerror(error));
  if (status_fd >= 0) _exit(error == ENOENT ? NOT_FOUND : CANNOT_RUN);
  return error == ENOENT ? NOT_FOUND : CANNOT_RUN;
}

/*
 * A seccomp filter for the program, installed after the uid switch with no-new-privs (which bwrap has
 * set already, and which lets an unprivileged process install one); inherited by every child, kept across exec:
 *  - kernel keyrings (add_key, request_key, keyctl) fail with ENOSYS, as under qemu-user: keyrings are not
 *    namespaced, and every run shares the sandbox uid's user keyring, so a key one run left was read by
 *    the next (the hostile battery's keyrings case);
 *  - a new user namespace (unshare or clone with CLONE_NEWUSER) fails with EPERM: the privileged sandbox
 *    runs in the host's user namespace, and a new one gives the program every capability over namespaces
 *    of its own, a large kernel surface; clone3, whose flags the filter cannot read, fails with ENOSYS,
 *    on which the C libraries fall back to clone.
 * Any other architecture's system call convention (i386's int 0x80, x32) is refused with ENOSYS, so the
 * numbers checked are the only ones. Hosts other than these four run without the filter.
 */
#if defined(__x86_64__)
#define FILTER_ARCH 0xc000003eu /* AUDIT_ARCH_X86_64 */
#elif defined(__aarch64__)
#define FILTER_ARCH 0xc00000b7u /* AUDIT_ARCH_AARCH64 */
#elif defined(__riscv) && __riscv_xlen == 64
#define FILTER_ARCH 0xc00000f3u /* AUDIT_ARCH_RISCV64 */
#elif defined(__arm__)
#define FILTER_ARCH 0x40000028u /* AUDIT_ARCH_ARM */
#endif

#ifdef FILTER_ARCH
/* Classic BPF as the kernel's <linux/filter.h> and <linux/seccomp.h> define it (musl ships neither). */
struct bpf_insn {
  uint16_t code;
  uint8_t jt, jf;
  uint32_t k;
};
struct bpf_program {
  unsigned short len;
  struct bpf_insn *insns;
};
enum { LOAD = 0x20, JEQ = 0x15, JSET = 0x45, JGE = 0x35, RET = 0x06 };
enum { NR = 0, ARCH = 4, ARG0_LOW = 16 };
#define ALLOW 0x7fff0000u
#define ERRNO(e) (0x00050000u | (e))
#define NEWUSER 0x10000000u /* CLONE_NEWUSER */

static void deny_shared_kernel_state(void) {
  struct bpf_insn insns[] = {
    {LOAD, 0, 0, ARCH},
    {JEQ, 1, 0, FILTER_ARCH},
    {RET, 0, 0, ERRNO(ENOSYS)},
    {LOAD, 0, 0, NR},
#ifdef __x86_64__
    {JGE, 8, 0, 0x40000000u}, /* x32 */
#else
    {JEQ, 0, 0, 0xffffffffu}, /* (no x32 here: a no-op keeps the jumps below the same) */
#endif
    {JEQ, 7, 0, SYS_add_key},
    {JEQ, 6, 0, SYS_request_key},
    {JEQ, 5, 0, SYS_keyctl},
    {JEQ, 6, 0, SYS_clone3},
    {JEQ, 1, 0, SYS_unshare},
    {JEQ, 0, 5, SYS_clone},
    {LOAD, 0, 0, ARG0_LOW},
    {JSET, 1, 3, NEWUSER},
    {RET, 0, 0, ERRNO(ENOSYS)},
    {RET, 0, 0, ERRNO(EPERM)},
    {RET, 0, 0, ERRNO(ENOSYS)},
    {RET, 0, 0, ALLOW},
  };
  struct bpf_program program = {(unsigned short)(sizeof insns / sizeof insns[0]), insns};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(SETUP_FAILED, "no-new-privs", strerror(errno));
  if (prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &program, 0, 0) != 0) fail(SETUP_FAILED, "seccomp", strerror(errno));
}
#else
static void deny_shared_kernel_state(void) {}
#endif

static int run_as(int argc, char **argv) {
  int status_fd = -1;
  if (argc >= 2 && strcmp(argv[0], "-s") == 0) {
    status_fd = parse_descriptor(argv[1]);
    argc -= 2;
    argv += 2;
  }
  if (argc < 4) usage();
  long long uid = parse_number(argv[0], UINT_MAX - 1);
  long long gid = parse_number(argv[1], UINT_MAX - 1);
  long long count = parse_number(argv[2], INT_MAX);
  if (uid < 0 || gid < 0 || count < 0 || count > argc - 4) usage();
  char **assignments = argv + 3;
  char **program = assignments + count;

  /* The status descriptor, if any, moves to 3 and stays; it closes on the program's exec. */
  if (status_fd >= 0) {
    if (status_fd != 3 && dup2(status_fd, 3) < 0) fail(SETUP_FAILED, "dup2", strerror(errno));
    status_fd = 3;
    if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) fail(SETUP_FAILED, "fcntl", strerror(errno));
  }
  if (remex_close_from(status_fd >= 0 ? 4 : 3) != 0) fail(SETUP_FAILED, "closing descriptors", strerror(errno));
  if (setgroups(0, NULL) != 0) fail(SETUP_FAILED, "setgroups", strerror(errno));
  if (setgid((gid_t)gid) != 0) fail(SETUP_FAILED, "setgid", strerror(errno));
  if (setuid((uid_t)uid) != 0) fail(SETUP_FAILED, "setuid", strerror(errno));
  /* The switch cleared the permitted and effective sets; the inheritable one goes too (no-new-privs makes it inert anyway). */
  /* capset(2)'s version 3 layout (musl ships no <linux/capability.h>). */
  struct { uint32_t version; int pid; } header = {0x20080522, 0};
  struct { uint32_t effective, permitted, inheritable; } none[2] = {{0, 0, 0}, {0, 0, 0}};
  if (syscall(SYS_capset, &header, none) != 0) fail(SETUP_FAILED, "capset", strerror(errno));
  deny_shared_kernel_state();

  if (clearenv() != 0) fail(SETUP_FAILED, "clearenv", NULL);
  for (long long k = 0; k < count; k++) {
    char *eq = strchr(assignments[k], '=');
    if (eq == NULL || eq == assignments[k]) fail(SETUP_FAILED, "not an assignment", assignments[k]);
    if (putenv(assignments[k]) != 0) fail(SETUP_FAILED, "putenv", strerror(errno));
  }
  return run_program(program, status_fd);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  if (strcmp(argv[1], "launch") == 0) return launch(argc - 2, argv + 2);
  if (strcmp(argv[1], "as") == 0) return run_as(argc - 2, argv + 2);
  if (strcmp(argv[1], "spawner") == 0 && argc == 2) return remex_spawner();
  usage();
  return SETUP_FAILED;
}
