/* The kernel's share of a fan-out delivery on this machine, measured with
 * no server at all: one process writes `size` bytes to each of `conns`
 * loopback TCP sockets per event (one send() per delivery, as a server
 * without batching across events must), `events` events at `rate` per
 * second; a second process reads every socket through epoll, as a load
 * generator does. Prints the writer's CPU per delivery, which is a floor
 * for any server that makes one write per delivery, and the latency from
 * an event's first write to each receipt (one clock, CLOCK_MONOTONIC),
 * which is a floor for fan-out latency on one writing thread.
 *
 *   cc -O2 -o /tmp/sendfloor bench/floor/sendfloor.c
 *   (--csv prints the columns of `tidings bench --csv-header` that apply)
 *   /tmp/sendfloor 1000 1000 100 200            # scenario (i)'s shape
 *   /tmp/sendfloor 10000 100000 10000 200 1000  # scenario (ii)'s shape
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_of(const struct rusage *r) {
  return r->ru_utime.tv_sec + r->ru_utime.tv_usec / 1e6 + r->ru_stime.tv_sec +
         r->ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Latency histogram in 10 us buckets up to 2 s. */
#define BUCKETS 200000
static unsigned hist[BUCKETS + 1];

static double percentile(long long total, double q) {
  if (q >= 1.0) { /* the largest sample's bucket */
    for (int b = BUCKETS; b > 0; --b)
      if (hist[b])
        return b * 0.01;
    return 0;
  }
  long long want = (long long)(q * total), seen = 0;
  for (int b = 0; b <= BUCKETS; ++b)
    if ((seen += hist[b]) > want)
      return b * 0.01;
  return BUCKETS * 0.01;
}

static void reader(int port, int conns, long long expect, int size,
                   int report) {
  int ep = epoll_create1(0);
  if (ep < 0)
    die("epoll_create1");
  /* Per socket, by index: its descriptor, the bytes of the current message
   * read so far, and that message's first 8 bytes (the send time). */
  int *fds = calloc(conns, sizeof(int));
  int *partial = calloc(conns, sizeof(int));
  char (*stamp)[8] = calloc(conns, 8);
  if (!fds || !partial || !stamp)
    die("calloc");
  for (int i = 0; i < conns; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
      die("connect");
    fds[i] = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
      die("epoll_ctl");
  }
  static char buf[65536];
  struct epoll_event evs[256];
  long long got = 0, messages = 0;
  while (got < expect) {
    int n = epoll_wait(ep, evs, 256, 10000);
    if (n <= 0)
      die("epoll_wait (writer stalled)");
    for (int i = 0; i < n; ++i) {
      uint32_t s = evs[i].data.u32;
      ssize_t r = recv(fds[s], buf, sizeof buf, MSG_DONTWAIT);
      if (r > 0) {
        long long at = now_ns();
        got += r;
        for (ssize_t k = 0; k < r; ++k) {
          if (partial[s] < 8)
            stamp[s][partial[s]] = buf[k];
          if (++partial[s] == size) {
            long long sent;
            memcpy(&sent, stamp[s], 8);
            long long b = (at - sent) / 10000;
            hist[b < 0 ? 0 : b > BUCKETS ? BUCKETS : b]++;
            ++messages;
            partial[s] = 0;
          }
        }
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR))
        die("recv");
    }
  }
  char line[256];
  int n = snprintf(line, sizeof line, "%lld %.3f %.3f %.3f %.3f %.3f\n",
                   messages, percentile(messages, 0.5),
                   percentile(messages, 0.9), percentile(messages, 0.99),
                   percentile(messages, 0.999), percentile(messages, 1.0));
  if (write(report, line, n) != n)
    die("write");
  exit(0);
}

int main(int argc, char **argv) {
  int csv = argc > 1 && strcmp(argv[argc - 1], "--csv") == 0;
  if (csv)
    --argc;
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: %s CONNS EVENTS RATE SIZE [ROOMS] [--csv]\n",
            argv[0]);
    return 2;
  }
  int conns = atoi(argv[1]);
  long long events = atoll(argv[2]);
  double rate = atof(argv[3]);
  int size = atoi(argv[4]);
  int rooms = argc == 6 ? atoi(argv[5]) : 1;
  if (rooms < 1 || rooms > conns || conns % rooms != 0) {
    fprintf(stderr, "ROOMS must divide CONNS\n");
    return 2;
  }
  int per_room = conns / rooms;
  if (conns < 1 || conns > 15000 || events < 1 || events > 10000000 ||
      rate <= 0 || size < 8 || size > 65536) {
    fprintf(stderr, "out of range\n");
    return 2;
  }
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0 ||
      getsockname(ls, (struct sockaddr *)&a, &al) < 0)
    die("listen");
  long long expect = (long long)events * per_room * size;
  int pipefd[2];
  if (pipe(pipefd) < 0)
    die("pipe");
  pid_t child = fork();
  if (child == 0) {
    close(pipefd[0]);
    reader(ntohs(a.sin_port), conns, expect, size, pipefd[1]);
  }
  close(pipefd[1]);
  int *fds = malloc(sizeof(int) * conns);
  for (int i = 0; i < conns; ++i) {
    fds[i] = accept(ls, NULL, NULL);
    if (fds[i] < 0)
      die("accept");
    int one = 1;
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  char *msg = malloc(size);
  memset(msg, 'x', size);
  struct rusage r0, r1;
  struct timespec t0, next, t1;
  getrusage(RUSAGE_SELF, &r0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  next = t0;
  long step = (long)(1e9 / rate);
  for (long long e = 0; e < events; ++e) {
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    long long sent = now_ns();
    memcpy(msg, &sent, 8);
    int first = (int)(e % rooms) * per_room;
    for (int i = first; i < first + per_room; ++i)
      if (send(fds[i], msg, size, 0) != size)
        die("send");
    next.tv_nsec += step;
    while (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      next.tv_sec += 1;
    }
  }
  getrusage(RUSAGE_SELF, &r1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  int status = 0;
  struct rusage rc;
  if (wait4(child, &status, 0, &rc) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "reader failed\n");
    return 1;
  }
  char line[256] = {0};
  long long messages = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, pmax = 0;
  if (read(pipefd[0], line, sizeof line - 1) <= 0 ||
      sscanf(line, "%lld %lf %lf %lf %lf %lf", &messages, &p50, &p90, &p99,
             &p999, &pmax) != 6) {
    fprintf(stderr, "reader sent no figures\n");
    return 1;
  }
  double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  double cpu = cpu_of(&r1) - cpu_of(&r0);
  double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
               (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  double n = (double)events * per_room;
  double missed = n - (double)messages;
  if (csv) {
    /* The columns of `tidings bench --csv-header` that apply here; the
     * writer stands in for the server, the reader for the generator. */
    printf("subscribers,rooms,events,rate,payload_bytes,connected,expected,"
           "received,window_s,deliveries_per_s,latency_p50_ms,latency_p90_ms,"
           "latency_p99_ms,latency_p999_ms,latency_max_ms,missed,duplicated,"
           "misrouted,out_of_order,server_cpu_s,server_cpu_pct,"
           "deliveries_per_server_cpu_s,bench_cpu_s,bench_cpu_pct,timed_out,"
           "ok,mode\n");
    printf("%d,%d,%lld,%.1f,%d,%d,%.0f,%lld,%.3f,%.1f,%.3f,%.3f,%.3f,%.3f,"
           "%.3f,%.0f,0,0,0,%.3f,%.1f,%.1f,%.3f,%.1f,false,%s,fanout\n",
           conns, rooms, events, rate, size, conns, n, messages, wall, n / wall,
           p50, p90, p99, p999, pmax, missed, cpu, 100 * cpu / wall, n / cpu,
           cpu_of(&rc), 100 * cpu_of(&rc) / wall, missed == 0 ? "true" : "false");
  } else {
    printf("deliveries %.0f in %.2f s; writer cpu %.2f s (%.0f%% system) = "
           "%.2f us per delivery, %.0f deliveries per CPU-second; reader cpu "
           "%.2f s\nlatency from an event's first write: p50 %.2f ms, p99 "
           "%.2f ms, max %.2f ms\n",
           n, wall, cpu, 100 * sys / cpu, 1e6 * cpu / n, n / cpu, cpu_of(&rc),
           p50, p99, pmax);
  }
  return 0;
}
