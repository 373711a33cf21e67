/*
 * remex-exec spawner: the sandbox spawner (src/worker/sandbox/spawner.ts) as a small C process. It does
 * what spawner-process.ts does for a Node spawner, without a Node heap to copy at every fork: starts
 * launchers, drains and bounds their output, relays bwrap's status stream and how they exit, and kills a
 * run's sandbox on request. Frames, little-endian, both ways: u32 length of what follows, u8 kind, u32 run
 * id, then the kind's fields (strings as u32 length + bytes). The layout is spawner-link.ts's.
 *
 * Requests on stdin:  1 spawn: u32 output bytes kept per stream, str stdin path ("" for /dev/null), str stdout
 *                       file and str stderr file ("" for both: kept in memory; else each stream is written to
 *                       its file, made afresh, up to the bytes kept, and the close frame holds none), str file,
 *                       u32 argc, str × argc (argv[0] included), u32 envc, str × envc ("NAME=VALUE"), str bwrap options
 *                       (written to the launcher's descriptor 3, then closed)
 *                     2 kill: SIGKILL the namespace's init and the launcher, unless the launcher was reaped
 *                     3 close-pipes: stop reading the run's output
 * Events on stdout:   1 ready · 2 spawned: u32 pid · 3 spawn-failed: str message · 4 status: bytes of bwrap's
 *                     status stream · 5 exit: i32 code (-1: by signal), i32 signal (0: none) · 6 close:
 *                     u64 stdout total, str stdout kept, u64 stderr total, str stderr kept
 *
 * The launcher gets: stdin from the file or /dev/null, stdout and stderr pipes, the options pipe at 3, the
 * status pipe at 4, no other descriptor, default signal handling, and exactly the environment given.
 * When stdin closes (the server is gone) every sandbox is killed and the spawner exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remex-exec.h"

enum { REQ_SPAWN = 1, REQ_KILL = 2, REQ_CLOSE_PIPES = 3 };
enum { EV_READY = 1, EV_SPAWNED = 2, EV_SPAWN_FAILED = 3, EV_STATUS = 4, EV_EXIT = 5, EV_CLOSE = 6 };
enum { OUT = 0, ERR = 1, STATUS = 2, STREAMS = 3 };
#define MAX_FRAME (64u << 20)
/* Kept per stream at most: two of them and the rest of a close frame must fit its u32 length. */
#define MAX_KEPT (1u << 30)
#define READ_CHUNK 65536

struct capture {
  char *data;
  uint32_t kept, capacity, limit;
  uint64_t total;
  int file; /* where the kept bytes go instead of `data` (a long job's live log); -1: in memory */
};

struct run {
  struct run *next;
  uint32_t id;
  pid_t pid;
  pid_t init_pid; /* 0 until bwrap's status names it */
  int exited;
  int fds[STREAMS]; /* read ends; -1 once closed */
  struct capture out[2];
  int args_fd; /* write end of the options pipe; -1 once written */
  char *args;
  size_t args_length, args_written;
  char status_head[128]; /* the stream's start, where "child-pid" is */
  size_t status_head_length;
};

static struct run *runs;
static void kill_run(struct run *run);

/* Every way out takes the sandboxes down first: a launcher not yet in bwrap has no parent-death signal. */
static void shut_down(int status) {
  for (struct run *run = runs; run; run = run->next) kill_run(run);
  exit(status);
}

static void die(const char *what) {
  fprintf(stderr, "remex-exec spawner: %s: %s\n", what, strerror(errno));
  shut_down(2);
}

/* ---- events ---- */

static void write_all(const void *data, size_t length) {
  const char *p = data;
  while (length > 0) {
    ssize_t n = write(STDOUT_FILENO, p, length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) shut_down(0); /* The server is gone. */
    p += n;
    length -= (size_t)n;
  }
}

struct frame {
  char *data;
  size_t length, capacity;
};

static void put(struct frame *f, const void *bytes, size_t length) {
  if (f->length + length > f->capacity) {
    size_t capacity = f->capacity ? f->capacity : 256;
    while (capacity < f->length + length) capacity *= 2;
    if (!(f->data = realloc(f->data, capacity))) die("realloc");
    f->capacity = capacity;
  }
  memcpy(f->data + f->length, bytes, length);
  f->length += length;
}

/* Every number in a frame is little-endian. */
static void store_u32(unsigned char *at, uint32_t v) {
  at[0] = v & 0xff;
  at[1] = (v >> 8) & 0xff;
  at[2] = (v >> 16) & 0xff;
  at[3] = v >> 24;
}

static uint32_t load_u32(const unsigned char *at) {
  return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

static void put_u32(struct frame *f, uint32_t v) {
  unsigned char b[4];
  store_u32(b, v);
  put(f, b, 4);
}

static void put_u64(struct frame *f, uint64_t v) {
  put_u32(f, (uint32_t)v);
  put_u32(f, (uint32_t)(v >> 32));
}

static void put_str(struct frame *f, const char *bytes, uint32_t length) {
  put_u32(f, length);
  put(f, bytes, length);
}

static struct frame begin(uint8_t kind, uint32_t id) {
  struct frame f = {0};
  put_u32(&f, 0); /* length, filled in by send_frame */
  put(&f, &kind, 1);
  put_u32(&f, id);
  return f;
}

static void send_frame(struct frame *f) {
  store_u32((unsigned char *)f->data, (uint32_t)(f->length - 4));
  write_all(f->data, f->length);
  free(f->data);
}

static void send_simple(uint8_t kind, uint32_t id) {
  struct frame f = begin(kind, id);
  send_frame(&f);
}

static void send_failed(uint32_t id, const char *what, int error) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", what, strerror(error));
  struct frame f = begin(EV_SPAWN_FAILED, id);
  put_str(&f, message, (uint32_t)strlen(message));
  send_frame(&f);
}

/* ---- requests ---- */

struct reader {
  const unsigned char *p, *end;
  int bad;
};

static uint32_t get_u32(struct reader *r) {
  if (r->end - r->p < 4) {
    r->bad = 1;
    return 0;
  }
  uint32_t v = load_u32(r->p);
  r->p += 4;
  return v;
}

/* A NUL-terminated copy (strings given to exec cannot hold NUL: the server rejects those). */
static char *get_str(struct reader *r, uint32_t *length_out) {
  uint32_t length = get_u32(r);
  if (r->bad || (size_t)(r->end - r->p) < length) {
    r->bad = 1;
    return NULL;
  }
  char *s = malloc((size_t)length + 1);
  if (!s) die("malloc");
  memcpy(s, r->p, length);
  s[length] = '\0';
  r->p += length;
  if (length_out) *length_out = length;
  return s;
}

static char **get_list(struct reader *r) {
  uint32_t count = get_u32(r);
  if (r->bad || count > (uint32_t)(r->end - r->p) / 4) {
    r->bad = 1;
    return NULL;
  }
  char **list = calloc((size_t)count + 1, sizeof *list);
  if (!list) die("calloc");
  for (uint32_t i = 0; i < count && !r->bad; i++) list[i] = get_str(r, NULL);
  return list;
}

static void free_list(char **list) {
  if (!list) return;
  for (char **p = list; *p; p++) free(*p);
  free(list);
}

static struct run *find(uint32_t id) {
  for (struct run *r = runs; r; r = r->next)
    if (r->id == id) return r;
  return NULL;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* In the child: descriptors 0–4 as the launcher expects them, nothing else inherited, then exec. */
static void become_launcher(int in, int out, int err, int args, int status, int error_pipe, const char *file, char **argv, char **envp) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  /* Out of 0–5 first, so that no dup2 below overwrites a descriptor still to be moved. */
  int moved[6] = {in, out, err, args, status, error_pipe};
  for (int i = 0; i < 6; i++) {
    moved[i] = fcntl(moved[i], F_DUPFD_CLOEXEC, 100);
    if (moved[i] < 0) goto failed;
  }
  error_pipe = moved[5];
  for (int i = 0; i < 5; i++)
    if (dup2(moved[i], i) < 0) goto failed;
  /* The error pipe at 5 (close-on-exec: its closing tells the parent the exec worked); nothing above it. */
  if (dup3(error_pipe, 5, O_CLOEXEC) < 0) goto failed;
  error_pipe = 5;
  if (remex_close_from(6) != 0) goto failed;
  execve(file, argv, envp);
failed:;
  int error = errno;
  ssize_t ignored = write(error_pipe, &error, sizeof error);
  (void)ignored;
  _exit(127);
}

static void spawn(uint32_t id, struct reader *r) {
  uint32_t limit = get_u32(r);
  char *stdin_path = get_str(r, NULL);
  char *out_paths[2] = {get_str(r, NULL), get_str(r, NULL)};
  char *file = get_str(r, NULL);
  int out_files[2] = {-1, -1};
  char **argv = get_list(r);
  char **envp = get_list(r);
  uint32_t args_length = 0;
  char *args = get_str(r, &args_length);
  int pipes[STREAMS + 1][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
  int error_pipe[2] = {-1, -1};
  int in = -1;
  if (r->bad || !argv || !argv[0]) {
    send_failed(id, "malformed spawn request", EINVAL);
    goto done;
  }
  in = open(stdin_path[0] ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    send_failed(id, stdin_path[0] ? stdin_path : "/dev/null", errno);
    goto done;
  }
  for (int i = 0; i < 2; i++) {
    if (!out_paths[i] || !out_paths[i][0]) continue;
    out_files[i] = open(out_paths[i], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out_files[i] < 0) {
      send_failed(id, out_paths[i], errno);
      goto done;
    }
  }
  for (int i = 0; i <= STREAMS; i++) {
    if (pipe2(pipes[i], O_CLOEXEC) != 0) {
      send_failed(id, "pipe", errno);
      goto done;
    }
  }
  if (pipe2(error_pipe, O_CLOEXEC) != 0) {
    send_failed(id, "pipe", errno);
    goto done;
  }
  /* pipes[3] is the options pipe: the launcher reads it. */
  pid_t pid = fork();
  if (pid < 0) {
    send_failed(id, "fork", errno);
    goto done;
  }
  if (pid == 0) become_launcher(in, pipes[OUT][1], pipes[ERR][1], pipes[3][0], pipes[STATUS][1], error_pipe[1], file, argv, envp);
  close_fd(&error_pipe[1]);
  int error = 0;
  ssize_t n;
  while ((n = read(error_pipe[0], &error, sizeof error)) < 0 && errno == EINTR) {}
  if (n > 0) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    send_failed(id, file, error);
    goto done;
  }
  struct run *run = calloc(1, sizeof *run);
  if (!run) die("calloc");
  run->id = id;
  run->pid = pid;
  for (int i = 0; i < STREAMS; i++) {
    run->fds[i] = pipes[i][0];
    pipes[i][0] = -1;
    fcntl(run->fds[i], F_SETFL, O_NONBLOCK);
  }
  for (int i = 0; i < 2; i++) {
    /* A long job's output: a roomier pipe, so a fast writer and this reader switch less often. */
    if (out_files[i] >= 0) fcntl(run->fds[i], F_SETPIPE_SZ, 1 << 20);
    run->out[i].limit = limit < MAX_KEPT ? limit : MAX_KEPT;
    run->out[i].file = out_files[i];
    out_files[i] = -1;
  }
  run->args_fd = pipes[3][1];
  pipes[3][1] = -1;
  fcntl(run->args_fd, F_SETFL, O_NONBLOCK);
  run->args = args;
  run->args_length = args_length;
  args = NULL;
  run->next = runs;
  runs = run;
  struct frame f = begin(EV_SPAWNED, id);
  put_u32(&f, (uint32_t)pid);
  send_frame(&f);
done:
  close_fd(&in);
  for (int i = 0; i <= STREAMS; i++) {
    close_fd(&pipes[i][0]);
    close_fd(&pipes[i][1]);
  }
  close_fd(&error_pipe[0]);
  close_fd(&error_pipe[1]);
  for (int i = 0; i < 2; i++) {
    close_fd(&out_files[i]);
    free(out_paths[i]);
  }
  free(stdin_path);
  free(file);
  free_list(argv);
  free_list(envp);
  free(args);
}

/* The parent pid in /proc/<pid>/stat, or -1. */
static pid_t parent_of(pid_t pid) {
  char path[64], text[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = '\0';
  /* "pid (comm) state ppid …", where comm may hold anything but ends at the last ')'. */
  char *end = strrchr(text, ')');
  int parent;
  return end && sscanf(end + 1, " %*c %d", &parent) == 1 ? (pid_t)parent : -1;
}

/*
 * The launcher (bwrap's monitor) is reaped only here, so until then its pid is its own. The namespace's
 * init is reaped by the monitor, and its pid may then be reused before the monitor exits: it is signalled
 * through a pidfd, and only while its parent is still the monitor.
 */
static void kill_run(struct run *run) {
  if (run->exited) return;
  if (run->init_pid > 0) {
    int init = (int)syscall(SYS_pidfd_open, run->init_pid, 0);
    if (init >= 0) {
      if (parent_of(run->init_pid) == run->pid) syscall(SYS_pidfd_send_signal, init, SIGKILL, NULL, 0);
      close(init);
    } else if (errno == ENOSYS && parent_of(run->init_pid) == run->pid) {
      kill(run->init_pid, SIGKILL); /* Kernels before 5.3: the check narrows the window, no more. */
    }
  }
  kill(run->pid, SIGKILL);
}

static void handle_request(const unsigned char *frame, size_t length) {
  struct reader r = {frame, frame + length, 0};
  uint8_t kind = length > 0 ? *r.p++ : 0;
  uint32_t id = get_u32(&r);
  if (r.bad) {
    fprintf(stderr, "remex-exec spawner: malformed request\n");
    shut_down(2);
  }
  struct run *run = find(id);
  switch (kind) {
    case REQ_SPAWN:
      spawn(id, &r);
      break;
    case REQ_KILL:
      if (run) kill_run(run);
      break;
    case REQ_CLOSE_PIPES:
      if (run)
        for (int i = 0; i < STREAMS; i++) close_fd(&run->fds[i]);
      break;
    default:
      fprintf(stderr, "remex-exec spawner: unknown request %u\n", kind);
      shut_down(2);
  }
}

/* ---- runs ---- */

static void capture(struct capture *c, const char *data, size_t length) {
  c->total += length;
  size_t room = c->limit - c->kept;
  size_t keep = length < room ? length : room;
  if (keep == 0) return;
  if (c->file >= 0) {
    /* A regular file: the write is whole unless the disk is full, and then the rest is only counted. */
    for (size_t done = 0; done < keep;) {
      ssize_t n = write(c->file, data + done, keep - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        c->kept += (uint32_t)done;
        c->limit = c->kept;
        return;
      }
      done += (size_t)n;
    }
    c->kept += (uint32_t)keep;
    return;
  }
  if (c->kept + keep > c->capacity) {
    /* Grown as output comes (most runs print little); if memory runs out, the rest is only counted. */
    uint64_t capacity = c->capacity ? c->capacity : READ_CHUNK;
    while (capacity < c->kept + keep) capacity *= 2;
    if (capacity > c->limit) capacity = c->limit;
    char *grown = realloc(c->data, capacity);
    if (!grown) {
      c->limit = c->kept;
      return;
    }
    c->data = grown;
    c->capacity = (uint32_t)capacity;
  }
  memcpy(c->data + c->kept, data, keep);
  c->kept += (uint32_t)keep;
}

/* bwrap's first status document is {"child-pid": N, ...}: the namespace's init, which kill needs. */
static void note_init_pid(struct run *run, const char *data, size_t length) {
  if (run->init_pid > 0) return;
  size_t room = sizeof run->status_head - 1 - run->status_head_length;
  if (length > room) length = room;
  memcpy(run->status_head + run->status_head_length, data, length);
  run->status_head_length += length;
  run->status_head[run->status_head_length] = '\0';
  const char *key = strstr(run->status_head, "\"child-pid\"");
  if (!key) return;
  const char *p = key + strlen("\"child-pid\"");
  while (*p == ' ' || *p == ':') p++;
  long pid = 0;
  const char *digits = p;
  while (*p >= '0' && *p <= '9') pid = pid * 10 + (*p++ - '0');
  if (p > digits && *p != '\0' && pid > 0) run->init_pid = (pid_t)pid;
}

/*
 * A stream that goes to a file (a long job's log), while there is room under its bound: the pipe's pages
 * are moved to the file by the kernel, no copy through here. Returns 0 when it did (or the pipe is empty
 * for now), -1 when the plain read path must take over (no room left, or the file cannot splice).
 */
static int splice_to_file(struct run *run, int stream) {
  struct capture *c = &run->out[stream];
  size_t room = c->limit - c->kept;
  if (c->file < 0 || room == 0) return -1;
  ssize_t n = splice(run->fds[stream], NULL, c->file, NULL, room < (1u << 20) ? room : (1u << 20), SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n < 0) return -1;
  if (n == 0) {
    close_fd(&run->fds[stream]);
    return 0;
  }
  c->total += (uint64_t)n;
  c->kept += (uint32_t)n;
  return 0;
}

static void read_stream(struct run *run, int stream) {
  static char buffer[READ_CHUNK];
  if (stream != STATUS && splice_to_file(run, stream) == 0) return;
  ssize_t n = read(run->fds[stream], buffer, sizeof buffer);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close_fd(&run->fds[stream]);
    return;
  }
  if (stream == STATUS) {
    note_init_pid(run, buffer, (size_t)n);
    struct frame f = begin(EV_STATUS, run->id);
    put(&f, buffer, (size_t)n);
    send_frame(&f);
  } else {
    capture(&run->out[stream], buffer, (size_t)n);
  }
}

static void write_args(struct run *run) {
  ssize_t n = write(run->args_fd, run->args + run->args_written, run->args_length - run->args_written);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n > 0) run->args_written += (size_t)n;
  /* Written, or the launcher is gone before reading them (EPIPE): its exit says why. */
  if (n <= 0 || run->args_written == run->args_length) {
    close_fd(&run->args_fd);
    free(run->args);
    run->args = NULL;
  }
}

static void finish_if_done(struct run *run) {
  if (!run->exited || run->fds[OUT] >= 0 || run->fds[ERR] >= 0 || run->fds[STATUS] >= 0) return;
  struct frame f = begin(EV_CLOSE, run->id);
  for (int i = 0; i < 2; i++) {
    put_u64(&f, run->out[i].total);
    put_str(&f, run->out[i].data ? run->out[i].data : "", run->out[i].data ? run->out[i].kept : 0);
  }
  send_frame(&f);
  for (struct run **p = &runs; *p; p = &(*p)->next) {
    if (*p == run) {
      *p = run->next;
      break;
    }
  }
  close_fd(&run->args_fd);
  close_fd(&run->out[0].file);
  close_fd(&run->out[1].file);
  free(run->args);
  free(run->out[0].data);
  free(run->out[1].data);
  free(run);
}

/* Launchers, and the orphaned inits of their sandboxes (see remex_spawner), which need no event. */
static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (struct run *run = runs; run; run = run->next) {
      if (run->pid != pid) continue;
      run->exited = 1;
      struct frame f = begin(EV_EXIT, run->id);
      put_u32(&f, WIFEXITED(status) ? (uint32_t)WEXITSTATUS(status) : UINT32_MAX);
      put_u32(&f, WIFSIGNALED(status) ? (uint32_t)WTERMSIG(status) : 0);
      send_frame(&f);
      break;
    }
  }
}

/* Requests read from stdin and not yet handled. */
static struct {
  unsigned char *data;
  size_t length, capacity;
} input;

/* Reads what stdin has and handles every whole request in it. Returns 0 at its end (the server is gone). */
static int read_requests(void) {
  if (input.capacity - input.length < READ_CHUNK) {
    input.capacity = input.length + READ_CHUNK * 2;
    if (!(input.data = realloc(input.data, input.capacity))) die("realloc");
  }
  ssize_t n = read(STDIN_FILENO, input.data + input.length, input.capacity - input.length);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
  if (n <= 0) return 0;
  input.length += (size_t)n;
  size_t start = 0;
  while (input.length - start >= 4) {
    const unsigned char *h = input.data + start;
    uint32_t length = load_u32(h);
    if (length > MAX_FRAME) {
      fprintf(stderr, "remex-exec spawner: request of %u bytes\n", length);
      shut_down(2);
    }
    if (input.length - start - 4 < length) break;
    handle_request(h + 4, length);
    start += 4 + (size_t)length;
  }
  memmove(input.data, input.data + start, input.length - start);
  input.length -= start;
  /* Room for the whole of a long request on the next reads. */
  if (input.length >= 4) {
    size_t whole = 4 + (size_t)load_u32(input.data);
    if (input.capacity < whole + READ_CHUNK) {
      input.capacity = whole + READ_CHUNK;
      if (!(input.data = realloc(input.data, input.capacity))) die("realloc");
    }
  }
  return 1;
}

int remex_spawner(void) {
  /* Nothing inherited beyond stdio reaches a launcher (they close at exec anyway; this is the spawner's own hygiene). */
  if (remex_close_from(3) != 0) die("closing descriptors");
  signal(SIGPIPE, SIG_IGN);
  /*
   * bwrap's monitor exits as soon as it has the program's status, before the namespace's init is gone, so
   * each init is orphaned: as a subreaper the spawner gets and reaps them (a host whose pid 1 reaps
   * lazily, or never, would otherwise collect a zombie per run).
   */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) die("prctl");
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &child, NULL) != 0) die("sigprocmask");
  int children = signalfd(-1, &child, SFD_NONBLOCK | SFD_CLOEXEC);
  if (children < 0) die("signalfd");

  send_simple(EV_READY, 0);

  for (int open = 1; open;) {
    size_t count = 2;
    for (struct run *run = runs; run; run = run->next) count += STREAMS + 1;
    struct pollfd *polls = calloc(count, sizeof *polls);
    struct run **owners = calloc(count, sizeof *owners);
    int *streams = calloc(count, sizeof *streams);
    if (!polls || !owners || !streams) die("calloc");
    size_t used = 0;
    polls[used++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    polls[used++] = (struct pollfd){.fd = children, .events = POLLIN};
    for (struct run *run = runs; run; run = run->next) {
      for (int i = 0; i < STREAMS; i++) {
        if (run->fds[i] < 0) continue;
        owners[used] = run;
        streams[used] = i;
        polls[used++] = (struct pollfd){.fd = run->fds[i], .events = POLLIN};
      }
      if (run->args_fd >= 0) {
        owners[used] = run;
        streams[used] = -1;
        polls[used++] = (struct pollfd){.fd = run->args_fd, .events = POLLOUT};
      }
    }
    if (poll(polls, used, -1) < 0 && errno != EINTR) die("poll");

    for (size_t i = 2; i < used; i++) {
      if (!polls[i].revents) continue;
      if (streams[i] < 0) write_args(owners[i]);
      else if (owners[i]->fds[streams[i]] == polls[i].fd) read_stream(owners[i], streams[i]);
    }
    if (polls[1].revents) {
      struct signalfd_siginfo info;
      while (read(children, &info, sizeof info) > 0) {}
      reap();
    }
    int input_ready = polls[0].revents != 0;
    free(polls);
    free(owners);
    free(streams);
    if (input_ready) open = read_requests();
    /* After the requests too: a close-pipes for a run that has exited leaves nothing to wake the poll. */
    for (struct run *run = runs, *next; run; run = next) {
      next = run->next;
      finish_if_done(run);
    }
  }
  shut_down(0);
  return 0;
}
