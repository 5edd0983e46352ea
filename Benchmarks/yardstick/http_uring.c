// http_uring.c: the C liburing yardstick for Spool's GET benchmark (api_vs_nginx.sh, A).
// The least an io_uring HTTP/1.1 server can do per keep-alive request: one ring with the
// setup flags Spool asks for, multishot accept, multishot receive into a provided buffer
// ring (as Spool's connections do), and for every "\r\n\r\n" in what arrives, the bytes
// of RESPONSE_FILE sent back unchanged. No parsing, routing, authentication, lookup,
// Date, ETag, request id or metrics: a floor, not a peer that does the same work. The
// benchmark feeds it Spool's own answer (headers and body, as curl read it), so both
// write the same bytes to the socket.
// Usage: http_uring PORT RESPONSE_FILE
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUFFERS = 256, BUFFER_SIZE = 4096, OUT_SIZE = 65536 };
enum { TAG_ACCEPT = 0, TAG_RECV = 1, TAG_SEND = 2 };

struct conn {
    int fd, closed;
    size_t len, sent;   // the answers queued in `out`, and how much of them is sent
    int tail;           // how many bytes of a "\r\n\r\n" the last piece ended with
    char out[OUT_SIZE];
};

static struct io_uring ring;
static struct io_uring_buf_ring *buffer_ring;
static char *buffers;
static char *response;
static size_t response_len;

static struct io_uring_sqe *next_sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) { io_uring_submit(&ring); s = io_uring_get_sqe(&ring); }
    return s;
}

static void arm_recv(struct conn *c) {
    struct io_uring_sqe *s = next_sqe();
    io_uring_prep_recv_multishot(s, c->fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = 0;
    io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | TAG_RECV);
}

static void send_pending(struct conn *c) {
    struct io_uring_sqe *s = next_sqe();
    io_uring_prep_send(s, c->fd, c->out + c->sent, c->len - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, (uint64_t)(uintptr_t)c | TAG_SEND);
}

/// Counts the request ends in `p`, carrying a partial "\r\n\r\n" across pieces.
static int request_ends(struct conn *c, const char *p, int n) {
    static const char end[4] = {'\r', '\n', '\r', '\n'};
    int found = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] == end[c->tail]) c->tail++;
        else c->tail = p[i] == '\r' ? 1 : 0;
        if (c->tail == 4) { found++; c->tail = 0; }
    }
    return found;
}

static void release(struct conn *c) {
    if (!c->closed) { close(c->fd); c->closed = 1; }
    if (c->sent == c->len) free(c);   // else the send in flight frees it
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: http_uring PORT RESPONSE_FILE\n"); return 2; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    response = malloc(OUT_SIZE);
    response_len = fread(response, 1, OUT_SIZE, f);
    fclose(f);
    if (response_len == 0 || response_len > OUT_SIZE / 8) { fprintf(stderr, "response must be 1..%d bytes\n", OUT_SIZE / 8); return 1; }

    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) { perror("bind/listen"); return 1; }
    struct io_uring_params params = {.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    if (io_uring_queue_init_params(1024, &ring, &params) < 0) { perror("io_uring_queue_init_params"); return 1; }
    // liburing 2.3 has no io_uring_setup_buf_ring: map the ring and register it by hand.
    buffer_ring = mmap(NULL, BUFFERS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (buffer_ring == MAP_FAILED) { perror("mmap"); return 1; }
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)buffer_ring, .ring_entries = BUFFERS, .bgid = 0};
    int rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc) { fprintf(stderr, "io_uring_register_buf_ring: %s\n", strerror(-rc)); return 1; }
    io_uring_buf_ring_init(buffer_ring);
    buffers = malloc((size_t)BUFFERS * BUFFER_SIZE);
    for (int i = 0; i < BUFFERS; i++)
        io_uring_buf_ring_add(buffer_ring, buffers + (size_t)i * BUFFER_SIZE, BUFFER_SIZE, i, io_uring_buf_ring_mask(BUFFERS), i);
    io_uring_buf_ring_advance(buffer_ring, BUFFERS);
    struct io_uring_sqe *s = next_sqe();
    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(s, TAG_ACCEPT);
    printf("http_uring: listening on 127.0.0.1:%d, %zu-byte response\n", ntohs(a.sin_port), response_len);
    fflush(stdout);

    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            if (ud == TAG_ACCEPT) {
                if (res >= 0) {
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = res;
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(c);
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    s = next_sqe();
                    io_uring_prep_multishot_accept(s, lfd, NULL, NULL, 0);
                    io_uring_sqe_set_data64(s, TAG_ACCEPT);
                }
                continue;
            }
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)3);
            if ((ud & 3) == TAG_RECV) {
                if (res == -ENOBUFS && !c->closed) { arm_recv(c); continue; }
                if (res <= 0) { if (!(cqe->flags & IORING_CQE_F_MORE)) release(c); continue; }
                int id = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                char *piece = buffers + (size_t)id * BUFFER_SIZE;
                int ends = request_ends(c, piece, res);
                io_uring_buf_ring_add(buffer_ring, piece, BUFFER_SIZE, id, io_uring_buf_ring_mask(BUFFERS), 0);
                io_uring_buf_ring_advance(buffer_ring, 1);
                if (!(cqe->flags & IORING_CQE_F_MORE)) arm_recv(c);
                int idle = c->sent == c->len;
                if (idle) c->len = c->sent = 0;
                for (; ends > 0 && c->len + response_len <= OUT_SIZE; ends--) {
                    memcpy(c->out + c->len, response, response_len);
                    c->len += response_len;
                }
                if (ends > 0) { fprintf(stderr, "http_uring: a client pipelined more than fits; closing it\n"); release(c); continue; }
                if (idle && c->len > 0) send_pending(c);
            } else {
                if (res <= 0) {
                    // A failed send: drop what is queued; the receive ends next and frees.
                    c->sent = c->len;
                    if (c->closed) free(c); else shutdown(c->fd, SHUT_RDWR);
                    continue;
                }
                c->sent += (size_t)res;
                if (c->closed && c->sent == c->len) { free(c); continue; }
                if (c->sent < c->len) send_pending(c);
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
}
