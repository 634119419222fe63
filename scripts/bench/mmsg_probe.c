/* mmsg_probe: the ceiling for mpcomm's datagram path on this machine, in C.
 *
 * Same shape as `examples/bench_peer.rs`: N threads (or, with --procs, processes) on 127.0.0.1, each sends M datagrams of
 * SIZE bytes to every peer (itself included) with one sendmmsg per datagram, reads with
 * recvmmsg (32 slots) and SO_TIMESTAMPNS, and stores a 24-byte record per delivery in an array
 * allocated up front. Turns alternate as in the driver: up to 32 sends, then up to 256 reads.
 * --no-mmsg: one sendto per destination and one recvmsg per datagram instead.
 * --oneway: peer 0 only sends, to peer 1 only, which only reads (like iperf/sockperf).
 * --multicast: every peer joins one group on 127.0.0.1 (as mpcomm's multicast transport) and
 *   sends each datagram once, with sendto, to the group; the loopback copies it to every member.
 * --interval-us US: paced (the latency mode): each peer sends one datagram every US µs at
 *   absolute CLOCK_MONOTONIC deadlines (a TFD_TIMER_ABSTIME timerfd, polled with the socket, as
 *   mpcomm's driver does), and prints lat_p50_us / lat_p99_us over the cross-peer deliveries
 *   (sender != receiver) after the first 10 % of messages: receiver's CLOCK_REALTIME right after
 *   recvmmsg returns - sender's CLOCK_REALTIME written into the payload just before the send
 *   (klat_*: the SO_TIMESTAMPNS stamp instead of the delivery time). Same definition as
 *   examples/bench_peer.rs.
 *
 * Prints one line: probe peers=.. mode=.. size=.. msgs=.. delivered=.. expected=.. sent=..
 * secs=.. dgrams_per_s=.. cpu_ns_per_dgram=..  where secs = last delivery - first send over all
 * peers and cpu_ns_per_dgram = user + system CPU time of all peers / delivered.
 *
 * Build: gcc -O2 -Wall -pthread -o mmsg_probe mmsg_probe.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 32
#define SEND_TURN 32
#define RECV_TURN 256
#define MAX_PEERS 64
#define SLOT_LEN 65536
#define HARD_LIMIT_NS (120ull * 1000000000ull) /* every run ends within 2 minutes */

struct result {
    uint64_t delivered, sent, first_send_ns, last_recv_ns, stamped;
    uint64_t nlat, *lat, *klat; /* cross-peer latencies (ns), in shared memory */
};
struct record {
    uint32_t sender, seq;
    uint64_t send_ns, recv_ns, deliver_ns;
};

static uint64_t now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Messages per sender left out of the latency figures: the first 10 %. In a mesh every peer
 * sends `msgs`; one-way, the receiver (msgs = 0) gets expected = the sender's count. */
static uint32_t out_warm(uint32_t msgs, uint64_t expected, int npeers) {
    (void)npeers;
    return (uint32_t)((msgs ? msgs : expected) / 10);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double q_us(uint64_t *v, uint64_t n, double q) {
    return n ? (double)v[(uint64_t)((double)(n - 1) * q + 0.5)] / 1e3 : 0;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static uint64_t stamp_of(struct msghdr *m) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
    return 0;
}

static void peer(int id, int fd, struct sockaddr_in *addrs, int npeers, int first_target,
                 int ntargets, uint32_t msgs, int size, int mmsg, uint64_t expected,
                 int quiet_ms, uint64_t interval_ns, struct result *out) {
    char *rbuf = malloc((size_t)SLOTS * SLOT_LEN);
    struct record *recs = malloc((expected + 1) * sizeof *recs);
    char *sbuf = calloc(1, (size_t)size);
    if (!rbuf || !recs || !sbuf) die("malloc");
    struct iovec riov[SLOTS], siov = {sbuf, (size_t)size};
    struct mmsghdr rh[SLOTS], sh[MAX_PEERS];
    union { char buf[CMSG_SPACE(sizeof(struct timespec))]; struct cmsghdr align; } cbuf[SLOTS];
    memset(rh, 0, sizeof rh);
    memset(sh, 0, sizeof sh);
    for (int i = 0; i < SLOTS; i++) {
        riov[i] = (struct iovec){rbuf + (size_t)i * SLOT_LEN, SLOT_LEN};
        rh[i].msg_hdr.msg_iov = &riov[i];
        rh[i].msg_hdr.msg_iovlen = 1;
        rh[i].msg_hdr.msg_control = cbuf[i].buf;
    }
    for (int t = 0; t < ntargets; t++) {
        sh[t].msg_hdr.msg_name = &addrs[first_target + t];
        sh[t].msg_hdr.msg_namelen = sizeof addrs[0];
        sh[t].msg_hdr.msg_iov = &siov;
        sh[t].msg_hdr.msg_iovlen = 1;
    }
    (void)npeers;
    uint32_t seq = 0;
    int next_target = 0; /* of the datagram in flight; 0 = none in flight */
    uint64_t delivered = 0, sent = 0, stamped = 0, first_send = 0, last_recv = 0;
    uint64_t start = now_ns(CLOCK_MONOTONIC), last_activity = start;
    uint64_t next_send = start; /* paced: CLOCK_MONOTONIC deadline of the next datagram */
    int tfd = -1;
    if (interval_ns) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (tfd < 0) die("timerfd_create");
    }
    for (;;) {
        int did = 0, blocked = 0;
        int turn = interval_ns ? (next_target || now_ns(CLOCK_MONOTONIC) >= next_send) : SEND_TURN;
        /* Send turn. */
        for (int k = 0; k < turn && seq < msgs && !blocked; k++) {
            if (next_target == 0) {
                uint64_t t = now_ns(CLOCK_REALTIME);
                uint32_t s32 = (uint32_t)id;
                memcpy(sbuf, &s32, 4);
                memcpy(sbuf + 4, &seq, 4);
                memcpy(sbuf + 8, &t, 8);
                if (!first_send) first_send = t;
            }
            while (next_target < ntargets) {
                int n;
                if (mmsg && ntargets > 1)
                    n = sendmmsg(fd, sh + next_target, (unsigned)(ntargets - next_target), MSG_DONTWAIT);
                else
                    n = sendto(fd, sbuf, (size_t)size, MSG_DONTWAIT,
                               (struct sockaddr *)&addrs[first_target + next_target],
                               sizeof addrs[0]) < 0 ? -1 : 1;
                if (n > 0) {
                    next_target += n;
                    sent += (uint64_t)n;
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    blocked = 1;
                    break;
                } else {
                    next_target++; /* counted as not sent, as mpcomm does */
                }
            }
            if (next_target == ntargets) {
                next_target = 0;
                seq++;
                did = 1;
                next_send += interval_ns;
            }
        }
        /* Receive turn. */
        for (int got = 0; got < RECV_TURN;) {
            int want = mmsg ? SLOTS : 1, n;
            for (int i = 0; i < want; i++) {
                rh[i].msg_hdr.msg_controllen = sizeof cbuf[i].buf;
                rh[i].msg_hdr.msg_flags = 0;
            }
            if (mmsg) {
                n = recvmmsg(fd, rh, (unsigned)want, MSG_DONTWAIT, NULL);
            } else {
                ssize_t r = recvmsg(fd, &rh[0].msg_hdr, MSG_DONTWAIT);
                if (r >= 0) rh[0].msg_len = (unsigned)r;
                n = r < 0 ? -1 : 1;
            }
            if (n <= 0) break;
            for (int i = 0; i < n; i++) {
                char *b = rbuf + (size_t)i * SLOT_LEN;
                uint64_t ns = stamp_of(&rh[i].msg_hdr), deliver = now_ns(CLOCK_REALTIME);
                stamped += ns != 0;
                if (rh[i].msg_len >= 16 && delivered < expected) {
                    struct record *r = &recs[delivered];
                    memcpy(&r->sender, b, 4);
                    memcpy(&r->seq, b + 4, 4);
                    memcpy(&r->send_ns, b + 8, 8);
                    r->recv_ns = ns;
                    r->deliver_ns = deliver;
                    delivered++;
                    last_recv = deliver;
                }
            }
            got += n;
            did = 1;
            if (n < want) break;
        }
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (did) last_activity = now;
        int sending_done = seq >= msgs;
        if (sending_done && delivered >= expected) break;
        if (now - start > HARD_LIMIT_NS) break;
        if (sending_done && now - last_activity > (uint64_t)quiet_ms * 1000000ull) break;
        if (interval_ns && !blocked && !sending_done && !next_target) {
            /* Paced: sleep until the next deadline or a datagram. */
            if (now < next_send) {
                struct itimerspec it = {{0, 0}, {(time_t)(next_send / 1000000000ull),
                                                 (long)(next_send % 1000000000ull)}};
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0 && errno != EAGAIN) die("read timerfd");
                timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
                struct pollfd p[2] = {{fd, POLLIN, 0}, {tfd, POLLIN, 0}};
                poll(p, 2, 1000);
            }
        } else if (!did || blocked) {
            struct pollfd p = {fd, (short)(POLLIN | (blocked ? POLLOUT : 0)), 0};
            poll(&p, 1, sending_done || blocked ? 10 : 0);
        }
    }
    if (tfd >= 0) close(tfd);
    /* Cross-peer latencies after the warm-up (the first 10 % of every sender's messages). */
    uint64_t nlat = 0;
    for (uint64_t i = 0; i < delivered && out->lat; i++) {
        struct record *r = &recs[i];
        if (r->sender == (uint32_t)id || r->seq < out_warm(msgs, expected, npeers)) continue;
        out->lat[nlat] = r->deliver_ns - r->send_ns;
        out->klat[nlat] = r->recv_ns - r->send_ns;
        nlat++;
    }
    out->nlat = nlat;
    out->delivered = delivered;
    out->sent = sent;
    out->first_send_ns = first_send;
    out->last_recv_ns = last_recv;
    out->stamped = stamped;
}

struct job {
    int id, fd, npeers, first, ntargets, size, mmsg, quiet_ms;
    uint32_t msgs;
    uint64_t interval_ns;
    uint64_t expected;
    struct sockaddr_in *addrs;
    struct result *out;
};

static void *run_job(void *p) {
    struct job *j = p;
    peer(j->id, j->fd, j->addrs, j->npeers, j->first, j->ntargets, j->msgs, j->size, j->mmsg,
         j->expected, j->quiet_ms, j->interval_ns, j->out);
    return NULL;
}

int main(int argc, char **argv) {
    int npeers = 2, size = 64, mmsg = 1, oneway = 0, quiet_ms = 300, procs = 0, multicast = 0;
    uint64_t interval_ns = 0;
    uint32_t msgs = 200000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--peers") && i + 1 < argc) npeers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--msgs") && i + 1 < argc) msgs = (uint32_t)strtoul(argv[++i], 0, 10);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quiet-ms") && i + 1 < argc) quiet_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-mmsg")) mmsg = 0;
        else if (!strcmp(argv[i], "--oneway")) oneway = 1;
        else if (!strcmp(argv[i], "--procs")) procs = 1;
        else if (!strcmp(argv[i], "--multicast")) multicast = 1;
        else if (!strcmp(argv[i], "--interval-us") && i + 1 < argc)
            interval_ns = strtoull(argv[++i], 0, 10) * 1000ull;
        else {
            fprintf(stderr, "usage: %s [--peers N] [--msgs M] [--size BYTES] [--no-mmsg] [--oneway] [--procs] [--multicast] [--interval-us US] [--quiet-ms MS]\n", argv[0]);
            return 2;
        }
    }
    if (oneway) npeers = 2;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    if (npeers < 1 || npeers > MAX_PEERS || size < 16 || size > 65507 || msgs == 0) {
        fprintf(stderr, "mmsg_probe: need 1..%d peers, 16..65507 bytes, msgs > 0\n", MAX_PEERS);
        return 2;
    }
    /* Bind every socket before any process sends: the barrier mpcomm's handshake provides. */
    int fds[MAX_PEERS];
    struct sockaddr_in addrs[MAX_PEERS], group = {.sin_family = AF_INET};
    if (multicast) {
        /* 239.255.x.y on a port nobody uses. */
        int t = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        if (t < 0 || bind(t, (struct sockaddr *)&a, sizeof a) || getsockname(t, (struct sockaddr *)&a, &len))
            die("a free port");
        close(t);
        group.sin_port = a.sin_port;
        group.sin_addr.s_addr = htonl(0xefff0000u | ((uint32_t)getpid() & 0xffffu));
    }
    for (int i = 0; i < npeers; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), on = 1, off = 0, buf = 4 << 20;
        if (fd < 0) die("socket");
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (multicast) {
            struct ip_mreq m = {.imr_multiaddr = group.sin_addr,
                                .imr_interface.s_addr = htonl(INADDR_LOOPBACK)};
            struct in_addr lo = {htonl(INADDR_LOOPBACK)};
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
            a = group;
            if (bind(fd, (struct sockaddr *)&a, sizeof a)) die("bind group");
            if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m)) die("IP_ADD_MEMBERSHIP");
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof lo);
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &on, sizeof on);
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &off, sizeof off);
            addrs[i] = group;
        } else {
            if (bind(fd, (struct sockaddr *)&a, sizeof a)) die("bind 127.0.0.1:0");
            socklen_t len = sizeof addrs[i];
            getsockname(fd, (struct sockaddr *)&addrs[i], &len);
        }
        fds[i] = fd;
    }
    struct result *res = mmap(NULL, sizeof(struct result) * (size_t)npeers, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) die("mmap");
    memset(res, 0, sizeof(struct result) * (size_t)npeers);
    if (interval_ns) {
        /* Room for every delivery's two latencies, shared so --procs children can fill it. */
        size_t per = (size_t)npeers * msgs + 1;
        uint64_t *lat = mmap(NULL, 2 * per * sizeof(uint64_t) * (size_t)npeers,
                             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (lat == MAP_FAILED) die("mmap");
        for (int i = 0; i < npeers; i++) {
            res[i].lat = lat + 2 * per * (size_t)i;
            res[i].klat = res[i].lat + per;
        }
    }
    struct job jobs[MAX_PEERS];
    pthread_t threads[MAX_PEERS];
    for (int i = 0; i < npeers; i++) {
        jobs[i] = (struct job){.id = i, .fd = fds[i], .npeers = npeers, .first = 0,
                               .ntargets = multicast ? 1 : npeers, .size = size, .mmsg = mmsg,
                               .quiet_ms = quiet_ms, .msgs = msgs, .interval_ns = interval_ns,
                               .expected = (uint64_t)npeers * msgs, .addrs = addrs,
                               .out = &res[i]};
        if (oneway) {
            jobs[i].first = 1;
            jobs[i].ntargets = i == 0 ? 1 : 0;
            jobs[i].msgs = i == 0 ? msgs : 0;
            jobs[i].expected = i == 0 ? 0 : msgs;
        }
    }
    int failed = 0;
    for (int i = 0; i < npeers; i++) {
        if (!procs) {
            if (pthread_create(&threads[i], NULL, run_job, &jobs[i])) die("pthread_create");
            continue;
        }
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            run_job(&jobs[i]);
            _exit(0);
        }
    }
    for (int i = 0; i < npeers; i++) {
        int st;
        if (!procs) pthread_join(threads[i], NULL);
        else if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) failed = 1;
    }
    getrusage(procs ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru1);
#define TV_NS(t) ((uint64_t)(t).tv_sec * 1000000000ull + (uint64_t)(t).tv_usec * 1000ull)
    uint64_t cpu = TV_NS(ru1.ru_utime) + TV_NS(ru1.ru_stime);
    if (!procs) cpu -= TV_NS(ru0.ru_utime) + TV_NS(ru0.ru_stime);
    uint64_t delivered = 0, sent = 0, first = UINT64_MAX, last = 0, stamped = 0;
    for (int i = 0; i < npeers; i++) {
        delivered += res[i].delivered;
        sent += res[i].sent;
        stamped += res[i].stamped;
        if (res[i].first_send_ns && res[i].first_send_ns < first) first = res[i].first_send_ns;
        if (res[i].last_recv_ns > last) last = res[i].last_recv_ns;
    }
    uint64_t expected = oneway ? msgs : (uint64_t)npeers * npeers * msgs;
    if (multicast) sent *= (uint64_t)npeers; /* copies: the group reaches every member */
    double secs = last > first ? (double)(last - first) / 1e9 : 0;
    uint64_t nlat = 0;
    uint64_t *lat = NULL, *klat = NULL;
    if (interval_ns) {
        lat = malloc((expected + 1) * sizeof *lat);
        klat = malloc((expected + 1) * sizeof *klat);
        if (!lat || !klat) die("malloc");
        for (int i = 0; i < npeers; i++) {
            memcpy(lat + nlat, res[i].lat, res[i].nlat * sizeof *lat);
            memcpy(klat + nlat, res[i].klat, res[i].nlat * sizeof *klat);
            nlat += res[i].nlat;
        }
        qsort(lat, nlat, sizeof *lat, cmp_u64);
        qsort(klat, nlat, sizeof *klat, cmp_u64);
    }
    printf("probe%s peers=%d mode=%s%s size=%d msgs=%u delivered=%llu expected=%llu sent=%llu "
           "stamped=%llu secs=%.4f dgrams_per_s=%.0f cpu_ns_per_dgram=%.0f lat_n=%llu lat_p50_us=%.1f "
           "lat_p99_us=%.1f klat_p50_us=%.1f klat_p99_us=%.1f\n",
           procs ? "-procs" : "", npeers, mmsg ? "mmsg" : "single",
           oneway ? "-oneway" : multicast ? "-mcast" : "", size, msgs,
           (unsigned long long)delivered, (unsigned long long)expected, (unsigned long long)sent,
           (unsigned long long)stamped, secs, secs > 0 ? (double)delivered / secs : 0,
           delivered ? (double)cpu / (double)delivered : 0, (unsigned long long)nlat,
           q_us(lat, nlat, 0.5), q_us(lat, nlat, 0.99), q_us(klat, nlat, 0.5), q_us(klat, nlat, 0.99));
    return failed;
}
