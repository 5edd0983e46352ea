// echo_uring.c: the C liburing yardstick for Spool's echo benchmark. A minimal echo server:
// one ring, accept -> recv -> send (short sends continued) -> recv, one buffer per connection,
// the same setup flags Spool asks for. Usage: echo_uring PORT
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { ACCEPT, RECV, SEND };
struct conn { int fd, op, len, sent; char buf[16384]; };

static void prep(struct io_uring *r, struct conn *c) {
    struct io_uring_sqe *s = io_uring_get_sqe(r);
    if (!s) { io_uring_submit(r); s = io_uring_get_sqe(r); }
    if (c->op == ACCEPT) io_uring_prep_accept(s, c->fd, NULL, NULL, 0);
    else if (c->op == RECV) io_uring_prep_recv(s, c->fd, c->buf, sizeof c->buf, 0);
    else io_uring_prep_send(s, c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data(s, c);
}

int main(int argc, char **argv) {
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(argc > 1 ? atoi(argv[1]) : 7001), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) { perror("bind/listen"); return 1; }
    struct io_uring ring;
    struct io_uring_params p = {.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    if (io_uring_queue_init_params(1024, &ring, &p) < 0 && io_uring_queue_init(1024, &ring, 0) < 0) { perror("io_uring"); return 1; }
    struct conn acceptor = {.fd = lfd, .op = ACCEPT};
    prep(&ring, &acceptor);
    printf("echo_uring: listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe) {
            struct conn *c = io_uring_cqe_get_data(cqe);
            int res = cqe->res;
            n++;
            if (c->op == ACCEPT) {
                if (res >= 0) {
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = res; nc->op = RECV;
                    setsockopt(res, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
                    prep(&ring, nc);
                }
                prep(&ring, c);
            } else if (c->op == RECV) {
                if (res <= 0) { close(c->fd); free(c); continue; }
                c->len = res; c->sent = 0; c->op = SEND;
                prep(&ring, c);
            } else {
                if (res <= 0) { close(c->fd); free(c); continue; }
                c->sent += res;
                c->op = c->sent < c->len ? SEND : RECV;
                prep(&ring, c);
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
