/*
 * openloop: an open-loop HTTP/1.1 load generator for latency at a fixed request rate.
 *
 *   cc -O2 -Wall -Wextra -o openloop loadtest/openloop.c -lm
 *   openloop -r RATE -d SECONDS -c CONNECTIONS [-w WARMUP] [-p url|latest|ddi|hello]
 *            [-n DEVICES] [-k KEY] [-s SEED] HOST PORT
 *
 * Requests arrive as a Poisson process: request i is scheduled at start + the sum of i
 * exponential gaps of mean 1/RATE (CLOCK_MONOTONIC, nanoseconds), whatever the answers' latency.
 * At its scheduled time a request is written on an idle keep-alive connection; when none is idle
 * it waits in a FIFO for the next connection that becomes idle (no extra connections are opened,
 * no pipelining). Its latency is the time its response has been read completely minus its
 * *scheduled* time, so time spent queued in the client counts (no coordinated omission). Only
 * requests scheduled after the warm-up are measured.
 *
 * The wait for the next send is epoll_pwait2 with a nanosecond timeout (timer slack set to 1 ns),
 * or, where that call is missing, a timerfd armed at the absolute send time; sends less than
 * SPIN_NS away are waited for by polling, so sends are not quantised to scheduler ticks.
 *
 * Output on stdout, one key=value a line:
 *   target_rps, sent (measured requests written), completed (measured responses read), rps
 *   (completed per measured second), p50_ms p90_ms p99_ms p999_ms max_ms mean_ms (latency of the
 *   completed measured requests), status_2xx..status_5xx (of those), errors (whole run: failed
 *   connects, connections closed or reset by the server, write errors, malformed responses; a
 *   request in flight on such a connection is lost, not retried), late_sends (measured requests
 *   written more than 1 ms after their scheduled time), and as diagnostics: scheduled (measured
 *   requests whose time came before the end), queued_sends (measured requests that found no idle
 *   connection and waited in the FIFO: the server, not the generator, is behind) and
 *   send_lag_p50_us / send_lag_p99_us (write time minus scheduled time of measured requests that
 *   found an idle connection: the generator's own precision).
 *
 * The run is bounded: connecting takes at most 1 s, then the schedule runs for WARMUP+SECONDS and
 * the program stops, answers outstanding or not, after at most RATE*(WARMUP+SECONDS)+1 requests.
 * Responses still outstanding at the end are not counted (see "scheduled" - "completed").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* -DOPENLOOP_NO_PWAIT2 forces the timerfd path, -DREAD_MAX=7 tiny reads (both for testing) */
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ) && !defined(OPENLOOP_NO_PWAIT2)
#if __GLIBC_PREREQ(2, 35)
#define HAVE_EPOLL_PWAIT2 1
#endif
#endif

#define NS_PER_S 1000000000LL
#define SPIN_NS 20000LL          /* a send closer than this is waited for by polling */
#define LATE_NS 1000000LL        /* a send later than this after its time is a late send */
#define RETRY_NS 10000000LL      /* wait after a failed connect */
#define CONNECT_PHASE_NS NS_PER_S
#define RBUF_SIZE 16384          /* a response's header block must fit */
#ifndef READ_MAX
#define READ_MAX RBUF_SIZE
#endif
#define MAX_EVENTS 256
#define TIMER_ID UINT32_MAX

/* ---------------------------------------------------------------- clock and random numbers */

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static uint64_t rng_s[4];

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void) { /* xoshiro256** */
    uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
    rng_s[2] ^= rng_s[0];
    rng_s[3] ^= rng_s[1];
    rng_s[1] ^= rng_s[2];
    rng_s[0] ^= rng_s[3];
    rng_s[2] ^= t;
    rng_s[3] = rotl(rng_s[3], 45);
    return r;
}

/* uniform in 1..n (n >= 1), without modulo bias */
static uint64_t rng_uniform1(uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, r;
    do r = rng_next(); while (r >= limit);
    return r % n + 1;
}

/* exponential with mean `mean` */
static double rng_exp(double mean) {
    double u = ((rng_next() >> 11) + 1) * 0x1.0p-53; /* (0, 1] */
    return -log(u) * mean;
}

/* ---------------------------------------------------------------- latency histogram
 * Log-linear buckets over microseconds, like HdrHistogram with 2 significant digits: values
 * below 2*SUB are exact; above, each power-of-two range [2^k, 2^(k+1)) is split into SUB equal
 * buckets, so a bucket's width is at most 1/SUB of its lower bound (SUB = 128: < 0.79 %). */
#define SUB_BITS 7
#define SUB (1 << SUB_BITS)
#define MAX_SHIFT 40 /* values up to 2^(SUB_BITS+MAX_SHIFT+1) us, far beyond 60 s */
#define NBUCKETS (2 * SUB + MAX_SHIFT * SUB)

typedef struct {
    uint64_t counts[NBUCKETS];
    uint64_t total, max;
    double sum;
} hist_t;

static size_t hist_index(uint64_t v) {
    if (v < 2 * SUB) return (size_t)v;
    int shift = (63 - __builtin_clzll(v)) - SUB_BITS; /* v >> shift in [SUB, 2*SUB) */
    if (shift > MAX_SHIFT) return NBUCKETS - 1;
    return (size_t)(2 * SUB + (shift - 1) * SUB + ((v >> shift) - SUB));
}

static uint64_t hist_highest(size_t i) { /* highest value that lands in bucket i */
    if (i < 2 * SUB) return i;
    size_t k = i - 2 * SUB;
    int shift = (int)(k / SUB) + 1;
    uint64_t lo = (uint64_t)(k % SUB + SUB) << shift;
    return lo + ((uint64_t)1 << shift) - 1;
}

static void hist_record(hist_t *h, uint64_t v) {
    h->counts[hist_index(v)]++;
    h->total++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
}

static uint64_t hist_percentile(const hist_t *h, double p) {
    if (!h->total) return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->total), seen = 0;
    if (want < 1) want = 1;
    for (size_t i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_highest(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------- a growable FIFO of int64 */

typedef struct {
    int64_t *a;
    size_t cap, head, len;
} fifo_t;

static void fifo_push(fifo_t *q, int64_t v) {
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 1024;
        int64_t *na = malloc(ncap * sizeof *na);
        if (!na) { perror("malloc"); exit(2); }
        for (size_t i = 0; i < q->len; i++) na[i] = q->a[(q->head + i) % q->cap];
        free(q->a);
        q->a = na;
        q->cap = ncap;
        q->head = 0;
    }
    q->a[(q->head + q->len) % q->cap] = v;
    q->len++;
}

static int64_t fifo_pop(fifo_t *q) {
    int64_t v = q->a[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return v;
}

/* ---------------------------------------------------------------- configuration and state */

enum mode { M_URL, M_LATEST, M_DDI, M_HELLO };
enum cstate { C_RETRY, C_CONNECTING, C_IDLE, C_BUSY };
enum pstate { P_HEAD, P_BODY, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILER, P_UNTIL_CLOSE };

typedef struct {
    int fd;
    enum cstate state;
    int64_t retry_at;
    int in_idle;          /* listed in the idle FIFO (entries of closed connections are skipped) */
    int64_t idle_since;
    int64_t sched;        /* scheduled time of the request in flight */
    char *wbuf;
    size_t wlen, woff;
    char rbuf[RBUF_SIZE];
    size_t rlen, rpos, scan;
    enum pstate pstate;
    uint64_t remaining;   /* body or chunk bytes still to skip */
    int status, close_after;
} conn_t;

static const char *versions[] = {"2.0.0", "2.0.0", "2.0.0", "2.0.0", "2.0.0",
                                 "2.0.0", "1.0.0", "1.0.0", "1.5.0", ""};
static const char *hardware[] = {"mp", "mp", "mp", "mp", "mp", "mp", "mp", "evt", "evt", "dvt"};

static struct {
    enum mode mode;
    uint64_t devices;
    const char *key;
    char host_header[300];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int epfd, tfd, use_pwait2;
    int64_t timer_armed;
    int64_t measure_from;
    conn_t *conns;
    int nconns, nretry;
    fifo_t idle, pending;
    hist_t lat, lag;
    uint64_t sent, completed, scheduled, late, queued, errors, status[6];
} g;

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s -r RATE -d SECONDS -c CONNECTIONS [-w WARMUP_SECONDS=0] [-p url|latest|ddi|hello]\n"
            "          [-n DEVICES=100000] [-k KEY] [-s SEED] HOST PORT\n",
            argv0);
    exit(2);
}

/* ---------------------------------------------------------------- requests */

static size_t build_request(char *buf, size_t cap) {
    int n;
    if (g.mode == M_HELLO) {
        n = snprintf(buf, cap, "GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n", g.host_header);
    } else {
        uint64_t i = rng_uniform1(g.devices);
        const char *auth = *g.key ? "" : NULL; /* no key: no key header (as poll.lua with OTA_KEY unset) */
        if (g.mode == M_DDI) {
            n = snprintf(buf, cap,
                         "GET /api/v0/hawkbit/default/controller/v1/D%llu HTTP/1.1\r\nHost: %s\r\n"
                         "%s%s%s\r\n",
                         (unsigned long long)i, g.host_header, auth ? "Authorization: GatewayToken " : "",
                         g.key, auth ? "\r\n" : "");
        } else {
            const char *v = versions[i % 10], *hw = hardware[(i * 7) % 10];
            n = snprintf(buf, cap,
                         "GET %s?device_serial=D%llu&hardware_version=%s&software_type=main%s%s HTTP/1.1\r\n"
                         "Host: %s\r\n%s%s%s\r\n",
                         g.mode == M_URL ? "/api/v0/releases/latest/url" : "/api/v0/releases/latest",
                         (unsigned long long)i, hw, *v ? "&current_version=" : "", v, g.host_header,
                         auth ? "Memfault-Project-Key: " : "", g.key, auth ? "\r\n" : "");
        }
    }
    if (n < 0 || (size_t)n >= cap) { fprintf(stderr, "request too long\n"); exit(2); }
    return (size_t)n;
}

/* ---------------------------------------------------------------- connections */

static void ep_ctl(int op, conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - g.conns)};
    if (epoll_ctl(g.epfd, op, c->fd, &ev) < 0) { perror("epoll_ctl"); exit(2); }
}

static void mark_idle(conn_t *c) {
    c->state = C_IDLE;
    c->idle_since = now_ns();
    if (!c->in_idle) {
        c->in_idle = 1;
        fifo_push(&g.idle, c - g.conns);
    }
}

static void reset_parser(conn_t *c) {
    c->rlen = c->rpos = c->scan = 0;
    c->pstate = P_HEAD;
    c->remaining = 0;
    c->status = 0;
    c->close_after = 0;
}

static void start_connect(conn_t *c, int64_t now) {
    reset_parser(c);
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) goto fail;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) == 0) {
        ep_ctl(EPOLL_CTL_ADD, c, EPOLLIN);
        mark_idle(c);
        return;
    }
    if (errno == EINPROGRESS) {
        c->state = C_CONNECTING;
        ep_ctl(EPOLL_CTL_ADD, c, EPOLLOUT);
        return;
    }
    close(c->fd);
fail:
    c->fd = -1;
    g.errors++;
    c->state = C_RETRY;
    c->retry_at = now + RETRY_NS;
    g.nretry++;
}

/* close (the request in flight, if any, is lost) and connect again */
static void reconnect(conn_t *c, int error, int64_t now) {
    if (error) g.errors++;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    start_connect(c, now);
}

static void send_request(conn_t *c, int64_t sched) {
    int64_t now = now_ns();
    c->sched = sched;
    c->state = C_BUSY;
    c->wlen = build_request(c->wbuf, 1024 + strlen(g.key) + strlen(g.host_header));
    c->woff = 0;
    if (sched >= g.measure_from) {
        g.sent++;
        if (now - sched > LATE_NS) g.late++;
    }
    ssize_t n = send(c->fd, c->wbuf, c->wlen, MSG_NOSIGNAL);
    if (n == (ssize_t)c->wlen) return;
    if (n < 0 && errno != EAGAIN) { reconnect(c, 1, now); return; }
    c->woff = n < 0 ? 0 : (size_t)n;
    ep_ctl(EPOLL_CTL_MOD, c, EPOLLIN | EPOLLOUT);
}

static void on_writable(conn_t *c, int64_t now) {
    ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN) reconnect(c, 1, now);
        return;
    }
    c->woff += (size_t)n;
    if (c->woff == c->wlen) ep_ctl(EPOLL_CTL_MOD, c, EPOLLIN);
}

/* ---------------------------------------------------------------- responses */

/* a response has been read completely; returns 0 if the connection was closed */
static int complete(conn_t *c, int64_t now) {
    if (c->sched >= g.measure_from) {
        g.completed++;
        hist_record(&g.lat, (uint64_t)(now - c->sched + 500) / 1000);
        int k = c->status / 100;
        if (k >= 2 && k <= 5) g.status[k]++;
    }
    c->pstate = P_HEAD;
    c->status = 0;
    if (c->close_after) {
        reconnect(c, 0, now);
        return 0;
    }
    mark_idle(c);
    return 1;
}

static int has_token(const char *v, size_t n, const char *tok) {
    size_t t = strlen(tok);
    for (size_t i = 0; i + t <= n; i++)
        if (strncasecmp(v + i, tok, t) == 0) return 1;
    return 0;
}

/* parse a header block rbuf[start, end) (end just after the empty line) */
static int parse_head(conn_t *c, const char *p, const char *end) {
    if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') return -1;
    int http10 = p[7] == '0';
    if (p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') return -1;
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    int chunked = 0, has_len = 0, conn_close = http10, keep_alive = 0;
    uint64_t len = 0;
    const char *line = memchr(p, '\n', (size_t)(end - p));
    if (!line) return -1;
    for (line++; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) return -1;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon) {
            size_t nlen = (size_t)(colon - line);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            size_t vlen = (size_t)(eol - v);
            if (nlen == 14 && strncasecmp(line, "content-length", 14) == 0) {
                char *e;
                errno = 0;
                len = strtoull(v, &e, 10);
                if (errno || e == v) return -1;
                has_len = 1;
            } else if (nlen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                chunked = has_token(v, vlen, "chunked");
            } else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0) {
                if (has_token(v, vlen, "close")) conn_close = 1;
                if (has_token(v, vlen, "keep-alive")) keep_alive = 1;
            }
        }
        line = eol + 1;
    }
    if (status >= 100 && status < 200) return 1; /* interim response: the final one follows */
    c->status = status;
    c->close_after = conn_close && !(http10 && keep_alive);
    if (status == 204 || status == 304) {
        c->remaining = 0;
        c->pstate = P_BODY;
    } else if (chunked) {
        c->pstate = P_CHUNK_SIZE;
    } else if (has_len) {
        c->remaining = len;
        c->pstate = P_BODY;
    } else {
        c->pstate = P_UNTIL_CLOSE;
        c->close_after = 1;
    }
    return 0;
}

/* consume what rbuf holds; returns -1 on a protocol error, 0 if the connection was closed, 1 otherwise */
static int process_input(conn_t *c, int64_t now) {
    for (;;) {
        size_t avail = c->rlen - c->rpos;
        char *p = c->rbuf + c->rpos;
        switch (c->pstate) {
        case P_HEAD: {
            if (!avail) goto out;
            if (c->state != C_BUSY) return -1; /* bytes nobody asked for */
            size_t from = c->scan > c->rpos + 3 ? c->scan - 3 : c->rpos;
            char *e = memmem(c->rbuf + from, c->rlen - from, "\r\n\r\n", 4);
            if (!e) {
                c->scan = c->rlen;
                if (c->rpos == 0 && c->rlen == RBUF_SIZE) return -1; /* header block too large */
                goto out;
            }
            e += 4;
            int r = parse_head(c, p, e);
            if (r < 0) return -1;
            c->rpos = (size_t)(e - c->rbuf);
            c->scan = c->rpos;
            break;
        }
        case P_BODY: {
            size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
            c->rpos += take;
            c->remaining -= take;
            if (c->remaining) goto out;
            c->scan = c->rpos;
            if (!complete(c, now)) return 0;
            break;
        }
        case P_CHUNK_SIZE:
        case P_TRAILER: {
            char *eol = memmem(p, avail, "\r\n", 2);
            if (!eol) {
                if (c->rpos == 0 && c->rlen == RBUF_SIZE) return -1;
                goto out;
            }
            c->rpos = (size_t)(eol + 2 - c->rbuf);
            if (c->pstate == P_TRAILER) {
                if (eol == p) { /* empty line: end of the chunked body */
                    c->scan = c->rpos;
                    if (!complete(c, now)) return 0;
                }
                break;
            }
            char *end;
            errno = 0;
            unsigned long long size = strtoull(p, &end, 16);
            if (errno || end == p) return -1;
            if (size == 0) {
                c->pstate = P_TRAILER;
            } else {
                c->remaining = size;
                c->pstate = P_CHUNK_DATA;
            }
            break;
        }
        case P_CHUNK_DATA:
        case P_CHUNK_CRLF: { /* skip the chunk's bytes, then its CRLF, then read the next size */
            size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
            c->rpos += take;
            c->remaining -= take;
            if (c->remaining) goto out;
            if (c->pstate == P_CHUNK_DATA) {
                c->remaining = 2;
                c->pstate = P_CHUNK_CRLF;
            } else {
                c->pstate = P_CHUNK_SIZE;
            }
            break;
        }
        case P_UNTIL_CLOSE:
            c->rpos = c->rlen;
            goto out;
        }
    }
out:
    if (c->rpos) { /* keep only the unconsumed tail */
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->scan = c->scan > c->rpos ? c->scan - c->rpos : 0;
        c->rpos = 0;
    }
    return 1;
}

static void on_readable(conn_t *c) {
    size_t room = RBUF_SIZE - c->rlen;
    ssize_t n = read(c->fd, c->rbuf + c->rlen, room < READ_MAX ? room : READ_MAX);
    int64_t now = now_ns();
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        reconnect(c, 1, now);
        return;
    }
    if (n == 0) { /* closed by the server */
        if (c->state == C_BUSY && c->pstate == P_UNTIL_CLOSE) {
            c->close_after = 1;
            complete(c, now);
        } else {
            reconnect(c, 1, now);
        }
        return;
    }
    c->rlen += (size_t)n;
    if (process_input(c, now) < 0) reconnect(c, 1, now);
}

static void on_connected(conn_t *c, int64_t now) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err) {
        close(c->fd);
        c->fd = -1;
        g.errors++;
        c->state = C_RETRY;
        c->retry_at = now + RETRY_NS;
        g.nretry++;
        return;
    }
    ep_ctl(EPOLL_CTL_MOD, c, EPOLLIN);
    mark_idle(c);
}

/* ---------------------------------------------------------------- event loop */

/* wait for events until `deadline` at the latest */
static int wait_events(struct epoll_event *ev, int64_t deadline) {
    int64_t wait = deadline - now_ns();
    int n;
    if (wait <= SPIN_NS) {
        n = epoll_wait(g.epfd, ev, MAX_EVENTS, 0);
    } else if (g.use_pwait2) {
#ifdef HAVE_EPOLL_PWAIT2
        struct timespec ts = {.tv_sec = wait / NS_PER_S, .tv_nsec = wait % NS_PER_S};
        n = epoll_pwait2(g.epfd, ev, MAX_EVENTS, &ts, NULL);
        if (n < 0 && errno == ENOSYS) {
            g.use_pwait2 = 0;
            return 0;
        }
#else
        n = 0;
#endif
    } else {
        if (deadline != g.timer_armed) {
            struct itimerspec its = {.it_value = {.tv_sec = deadline / NS_PER_S, .tv_nsec = deadline % NS_PER_S}};
            if (timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) { perror("timerfd_settime"); exit(2); }
            g.timer_armed = deadline;
        }
        n = epoll_wait(g.epfd, ev, MAX_EVENTS, -1);
    }
    if (n < 0) {
        if (errno != EINTR) { perror("epoll_wait"); exit(2); }
        n = 0;
    }
    return n;
}

static void handle_events(struct epoll_event *ev, int n) {
    for (int i = 0; i < n; i++) {
        if (ev[i].data.u32 == TIMER_ID) {
            uint64_t x;
            if (read(g.tfd, &x, sizeof x) < 0 && errno != EAGAIN) { perror("timerfd read"); exit(2); }
            g.timer_armed = -1;
            continue;
        }
        conn_t *c = &g.conns[ev[i].data.u32];
        uint32_t e = ev[i].events;
        if (c->fd < 0) continue;
        if (c->state == C_CONNECTING) {
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c, now_ns());
            continue;
        }
        if ((e & EPOLLOUT) && c->woff < c->wlen) on_writable(c, now_ns());
        if (c->fd >= 0 && c->state != C_CONNECTING && (e & (EPOLLIN | EPOLLERR | EPOLLHUP))) on_readable(c);
    }
}

static void do_retries(int64_t now, int64_t *deadline) {
    if (!g.nretry) return;
    for (int i = 0; i < g.nconns; i++) {
        conn_t *c = &g.conns[i];
        if (c->state != C_RETRY) continue;
        if (c->retry_at <= now) {
            g.nretry--;
            start_connect(c, now);
        } else if (c->retry_at < *deadline) {
            *deadline = c->retry_at;
        }
    }
}

static double parse_num(const char *s, const char *what) {
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || !(v >= 0) || isinf(v)) {
        fprintf(stderr, "bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    double rate = 0, seconds = 0, warmup = 0;
    int conns = 0, opt, seeded = 0;
    uint64_t seed = 0;
    g.mode = M_URL;
    g.devices = 100000;
    g.key = "";
    while ((opt = getopt(argc, argv, "r:d:c:w:p:n:k:s:h")) != -1) {
        switch (opt) {
        case 'r': rate = parse_num(optarg, "rate"); break;
        case 'd': seconds = parse_num(optarg, "duration"); break;
        case 'c': conns = (int)parse_num(optarg, "connections"); break;
        case 'w': warmup = parse_num(optarg, "warm-up"); break;
        case 'n': g.devices = (uint64_t)parse_num(optarg, "devices"); break;
        case 'k': g.key = optarg; break;
        case 's': seed = (uint64_t)parse_num(optarg, "seed"); seeded = 1; break;
        case 'p':
            if (!strcmp(optarg, "url")) g.mode = M_URL;
            else if (!strcmp(optarg, "latest")) g.mode = M_LATEST;
            else if (!strcmp(optarg, "ddi")) g.mode = M_DDI;
            else if (!strcmp(optarg, "hello")) g.mode = M_HELLO;
            else usage(argv[0]);
            break;
        default: usage(argv[0]);
        }
    }
    if (argc - optind != 2 || rate <= 0 || seconds <= 0 || conns < 1 || conns > 100000 || g.devices < 1)
        usage(argv[0]);
    if (strlen(g.key) > 4096) { fprintf(stderr, "key too long\n"); return 2; }
    const char *host = argv[optind], *port = argv[optind + 1];

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) { fprintf(stderr, "%s:%s: %s\n", host, port, gai_strerror(rc)); return 2; }
    memcpy(&g.addr, ai->ai_addr, ai->ai_addrlen);
    g.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(g.host_header, sizeof g.host_header, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);

    if (!seeded) seed = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 0; i < 4; i++) rng_s[i] = splitmix64(&seed);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake-ups at the time asked, not up to 50 us later */

    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g.epfd < 0) { perror("epoll_create1"); return 2; }
#ifdef HAVE_EPOLL_PWAIT2
    g.use_pwait2 = 1;
#endif
    g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (g.tfd < 0) { perror("timerfd_create"); return 2; }
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TIMER_ID};
    if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.tfd, &tev) < 0) { perror("epoll_ctl"); return 2; }
    g.timer_armed = -1;

    g.nconns = conns;
    g.conns = calloc((size_t)conns, sizeof *g.conns);
    if (!g.conns) { perror("calloc"); return 2; }
    size_t wcap = 1024 + strlen(g.key) + strlen(g.host_header) + 1;
    struct epoll_event ev[MAX_EVENTS];

    /* connect every connection first (at most CONNECT_PHASE_NS) */
    int64_t t0 = now_ns();
    for (int i = 0; i < conns; i++) {
        g.conns[i].wbuf = malloc(wcap);
        if (!g.conns[i].wbuf) { perror("malloc"); return 2; }
        start_connect(&g.conns[i], t0);
    }
    for (;;) {
        int64_t now = now_ns(), dl = t0 + CONNECT_PHASE_NS;
        int connecting = 0;
        for (int i = 0; i < conns; i++) connecting += g.conns[i].state == C_CONNECTING;
        if (!connecting || now >= dl || stop_flag) break;
        handle_events(ev, wait_events(ev, dl));
    }

    const int64_t start = now_ns();
    const int64_t end = start + (int64_t)((warmup + seconds) * 1e9);
    const uint64_t cap = (uint64_t)(rate * (warmup + seconds)) + 1;
    const double mean_gap = 1e9 / rate;
    g.measure_from = start + (int64_t)(warmup * 1e9);
    uint64_t total = 0;
    double offset = rng_exp(mean_gap); /* ns after start of the next request */
    int64_t next = start + (int64_t)offset;

    while (!stop_flag) {
        int64_t now = now_ns();
        if (now >= end) break;
        while (total < cap && next <= now && next < end) {
            fifo_push(&g.pending, next);
            total++;
            if (next >= g.measure_from) g.scheduled++;
            offset += rng_exp(mean_gap);
            next = start + (int64_t)offset;
        }
        while (g.pending.len && g.idle.len) {
            conn_t *c = &g.conns[fifo_pop(&g.idle)];
            c->in_idle = 0;
            if (c->state != C_IDLE) continue; /* closed since it was listed */
            int64_t sched = fifo_pop(&g.pending);
            if (sched >= g.measure_from) {
                /* the oldest idle connection became idle after the request's time: it waited */
                if (c->idle_since > sched) {
                    g.queued++;
                } else {
                    int64_t lag = now_ns() - sched;
                    hist_record(&g.lag, lag > 0 ? (uint64_t)lag / 1000 : 0);
                }
            }
            send_request(c, sched);
        }
        int64_t deadline = end;
        /* with no idle connection the next request only queues: no need to wake up for it */
        if (total < cap && next < deadline && g.idle.len) deadline = next;
        do_retries(now, &deadline);
        handle_events(ev, wait_events(ev, deadline));
    }

    double measured = seconds;
    if (stop_flag) { /* interrupted: report over the part measured */
        double done = (double)(now_ns() - g.measure_from) / 1e9;
        measured = done > 0 ? (done < seconds ? done : seconds) : 0;
    }
    printf("target_rps=%.3f\n", rate);
    printf("sent=%llu\n", (unsigned long long)g.sent);
    printf("completed=%llu\n", (unsigned long long)g.completed);
    printf("rps=%.3f\n", measured > 0 ? (double)g.completed / measured : 0.0);
    printf("p50_ms=%.3f\n", hist_percentile(&g.lat, 50) / 1000.0);
    printf("p90_ms=%.3f\n", hist_percentile(&g.lat, 90) / 1000.0);
    printf("p99_ms=%.3f\n", hist_percentile(&g.lat, 99) / 1000.0);
    printf("p999_ms=%.3f\n", hist_percentile(&g.lat, 99.9) / 1000.0);
    printf("max_ms=%.3f\n", g.lat.max / 1000.0);
    printf("mean_ms=%.3f\n", g.lat.total ? g.lat.sum / (double)g.lat.total / 1000.0 : 0.0);
    for (int k = 2; k <= 5; k++) printf("status_%dxx=%llu\n", k, (unsigned long long)g.status[k]);
    printf("errors=%llu\n", (unsigned long long)g.errors);
    printf("late_sends=%llu\n", (unsigned long long)g.late);
    printf("scheduled=%llu\n", (unsigned long long)g.scheduled);
    printf("queued_sends=%llu\n", (unsigned long long)g.queued);
    printf("send_lag_p50_us=%llu\n", (unsigned long long)hist_percentile(&g.lag, 50));
    printf("send_lag_p99_us=%llu\n", (unsigned long long)hist_percentile(&g.lag, 99));
    return 0;
}
