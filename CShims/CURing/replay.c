// replay.c: replayed answers in the reap (ADR 0019, addendum 5; contract in CURing.h).
//
// Goal: a keep-alive poll whose bytes equal the connection's kept request, while every
// guard the answer was made under still holds, is answered here, between the CQ and
// Swift: one memcmp, the Date and the request id renewed in place, a send prepared, the
// receive buffer handed back to the buffer ring. No Swift runs for it; the metrics are
// folded once per reap from `stats`.
// What keeps it sound (the Swift side, Ring.ReplayEntry, keeps these):
//  - an entry is armed only while its connection's task waits for a request with nothing
//    received and nothing of Swift's to send; any receive of the connection that the reap
//    leaves to Swift disarms it, here, before the next completion of the batch is looked
//    at (Swift sees the batch only after it is reaped: an outside probe had a kept poll
//    answered ahead of the 16 KiB request received just before it in the same batch);
//  - a replay's send is one at a time and owns the answer bytes until it completes: no
//    replay, no `keep` and no Swift send is started on the socket meanwhile (Swift's
//    outbox waits behind `sending` and asks to be told, `notify`);
//  - an entry lives until the connection is gone and its send has completed (user_data
//    carry the generation, so a late completion never reaches a reused entry).
#include "curing_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int curing_replays_setup(curing_ring *r, unsigned capacity, unsigned slots, void *pool_base, uint32_t buffer_size) {
    if (capacity == 0 || capacity > CURING_REPLAY_INDEX_MASK + 1 || slots == 0 || slots > CURING_REPLAY_UD_BIT) return -EINVAL;
    // calloc of a large table maps zero pages: untouched entries cost no memory.
    r->replays = calloc(capacity, sizeof *r->replays);
    r->replay_of_slot = calloc(slots, sizeof *r->replay_of_slot);
    if (!r->replays || !r->replay_of_slot) {
        curing_replays_destroy(r);
        return -ENOMEM;
    }
    r->replays_cap = capacity;
    r->slot_count = slots;
    r->replays_free = 0;
    for (unsigned i = capacity; i > 0; i--) {
        r->replays[i - 1].next_free = r->replays_free;
        r->replays[i - 1].gen = 1;
        r->replays_free = i;
    }
    r->pool_base = pool_base;
    r->buffer_size = buffer_size;
    r->date_second = -1;
    return 0;
}

void curing_replays_destroy(curing_ring *r) {
    if (r->replays) {
        for (unsigned i = 0; i < r->replays_cap; i++) {
            free(r->replays[i].request);
            free(r->replays[i].answer);
        }
    }
    free(r->replays);
    free(r->replay_of_slot);
    r->replays = NULL;
    r->replay_of_slot = NULL;
    r->replays_cap = 0;
}

curing_replay *curing_replay_open(curing_ring *r, int fd, void *owner, uint32_t *index) {
    if (!r->replays || r->replays_free == 0) return NULL;
    uint32_t i = r->replays_free - 1;
    curing_replay *e = &r->replays[i];
    r->replays_free = e->next_free;
    uint32_t gen = e->gen;
    uint8_t *request = e->request, *answer = e->answer;
    uint32_t request_cap = e->request_cap, answer_cap = e->answer_cap;
    memset(e, 0, sizeof *e);
    e->gen = gen;
    // Storage of an earlier connection's entry is reused (it was kept small on release).
    e->request = request; e->request_cap = request_cap;
    e->answer = answer; e->answer_cap = answer_cap;
    e->in_use = 1;
    e->fd = fd;
    e->owner = owner;
    e->rid_at = -1;
    e->date_second = -1;
    *index = i;
    return e;
}

static void free_entry(curing_ring *r, curing_replay *e) {
    uint32_t i = (uint32_t)(e - r->replays);
    // Keep a typical poll's storage for the next connection; let larger go.
    if (e->request_cap > 2048) { free(e->request); e->request = NULL; e->request_cap = 0; }
    if (e->answer_cap > 4096) { free(e->answer); e->answer = NULL; e->answer_cap = 0; }
    e->in_use = 0;
    e->armed = 0;
    e->owner = NULL;
    e->gen = (e->gen + 1) & 0x7FFFFFFFu;
    if (e->gen == 0) e->gen = 1;
    e->next_free = r->replays_free;
    r->replays_free = i + 1;
}

void curing_replay_release(curing_ring *r, curing_replay *e) {
    if (!e || !e->in_use) return;
    e->armed = 0;
    e->owner = NULL;
    if (e->sending) e->released = 1;   // freed when the send completes
    else free_entry(r, e);
}

static int reserve(uint8_t **p, uint32_t *cap, uint32_t len) {
    if (len <= *cap) return 0;
    uint32_t want = len < 256 ? 256 : len;
    uint8_t *q = realloc(*p, want);
    if (!q) return -ENOMEM;
    *p = q;
    *cap = want;
    return 0;
}

int curing_replay_keep(curing_replay *e, const void *request, uint32_t request_len,
                       const void *answer, uint32_t answer_len, int32_t date_at, int32_t rid_at) {
    e->armed = 0;
    if (e->sending) return -EBUSY;
    if (date_at < 0 || (uint32_t)date_at + 29 > answer_len || (rid_at >= 0 && (uint32_t)rid_at + 16 > answer_len)) return -EINVAL;
    if (reserve(&e->request, &e->request_cap, request_len) || reserve(&e->answer, &e->answer_cap, answer_len)) {
        e->request_len = 0;
        e->answer_len = 0;
        return -ENOMEM;
    }
    memcpy(e->request, request, request_len);
    memcpy(e->answer, answer, answer_len);
    e->request_len = request_len;
    e->answer_len = answer_len;
    e->date_at = date_at;
    e->rid_at = rid_at;
    e->date_second = -1;
    return 0;
}

void curing_replay_arm(curing_ring *r, curing_replay *e, uint64_t recv_ud) {
    uint32_t slot = (uint32_t)recv_ud;
    if (slot >= r->slot_count || e->answer_len == 0) return;
    e->recv_ud = recv_ud;
    r->replay_of_slot[slot] = (uint32_t)(e - r->replays) + 1;
    e->armed = 1;
}

curing_replay *curing_replay_lookup(curing_ring *r, uint64_t ud) {
    uint32_t i = (uint32_t)ud & CURING_REPLAY_INDEX_MASK;
    if (!r->replays || i >= r->replays_cap) return NULL;
    curing_replay *e = &r->replays[i];
    if (!e->in_use || e->released || e->gen != (uint32_t)(ud >> 32)) return NULL;
    return e;
}

curing_replay_stat *curing_replay_stats(curing_ring *r) { return r->stats; }

// IMF-fixdate (RFC 9110 §5.6.7) of `t` seconds since the epoch, 29 bytes, no NUL.
static void format_date(int64_t t, char out[29]) {
    static const char days[7][3] = {{'T','h','u'},{'F','r','i'},{'S','a','t'},{'S','u','n'},{'M','o','n'},{'T','u','e'},{'W','e','d'}};
    static const char months[12][3] = {{'J','a','n'},{'F','e','b'},{'M','a','r'},{'A','p','r'},{'M','a','y'},{'J','u','n'},
                                       {'J','u','l'},{'A','u','g'},{'S','e','p'},{'O','c','t'},{'N','o','v'},{'D','e','c'}};
    int64_t day = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t secs = t - day * 86400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    int64_t z = day + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    int64_t wd = ((day % 7) + 7) % 7;
    int h = (int)(secs / 3600), mi = (int)(secs / 60 % 60), s = (int)(secs % 60);
    char *o = out;
    memcpy(o, days[wd], 3); o[3] = ','; o[4] = ' ';
    o[5] = (char)('0' + d / 10); o[6] = (char)('0' + d % 10); o[7] = ' ';
    memcpy(o + 8, months[m - 1], 3); o[11] = ' ';
    int yy = (int)(y < 0 ? 0 : y > 9999 ? 9999 : y);
    o[12] = (char)('0' + yy / 1000); o[13] = (char)('0' + yy / 100 % 10); o[14] = (char)('0' + yy / 10 % 10); o[15] = (char)('0' + yy % 10);
    o[16] = ' ';
    o[17] = (char)('0' + h / 10); o[18] = (char)('0' + h % 10); o[19] = ':';
    o[20] = (char)('0' + mi / 10); o[21] = (char)('0' + mi % 10); o[22] = ':';
    o[23] = (char)('0' + s / 10); o[24] = (char)('0' + s % 10);
    memcpy(o + 25, " GMT", 4);
}

// A completion of a replay's send: 1 when Swift must hear of it (copied to `out`).
static int replay_sent(curing_ring *r, const struct io_uring_cqe *cqe, curing_cqe *out) {
    uint32_t i = (uint32_t)cqe->user_data & CURING_REPLAY_INDEX_MASK;
    if (!r->replays || i >= r->replays_cap) return 0;
    curing_replay *e = &r->replays[i];
    if (!e->in_use || e->gen != (uint32_t)(cqe->user_data >> 32) || !e->sending) return 0;
    e->sending = 0;
    if (e->released) {
        free_entry(r, e);
        return 0;
    }
    int whole = cqe->res == (int32_t)e->answer_len;
    if (whole && !e->notify) return 0;
    // A failed send breaks the stream: nothing more is replayed until Swift has seen it.
    if (!whole) e->armed = 0;
    e->notify = 0;
    out->user_data = cqe->user_data;
    out->res = cqe->res;
    out->flags = whole ? CURING_REPLAY_SENT_WHOLE : 0;
    return 1;
}

// The entry a receive completion belongs to, when it is armed.
static curing_replay *armed_entry(curing_ring *r, uint64_t ud) {
    uint32_t slot = (uint32_t)ud;
    if (slot >= r->slot_count) return NULL;
    uint32_t k = r->replay_of_slot[slot];
    if (k == 0) return NULL;
    curing_replay *e = &r->replays[k - 1];
    return e->in_use && e->armed && e->recv_ud == ud ? e : NULL;
}

// Leaves a completion of an armed entry's receive to Swift: disarmed here, at once, so
// that nothing later of the connection in this same batch is answered before Swift has
// handled this one (it reaches Swift only after the whole batch is reaped).
static int leave_to_swift(curing_replay *e) {
    e->armed = 0;
    return 0;
}

// A receive: 1 when it was an armed entry's kept request and its answer is on its way.
static int replay_received(curing_ring *r, const struct io_uring_cqe *cqe, int64_t *t0, unsigned *counts) {
    curing_replay *e = armed_entry(r, cqe->user_data);
    if (!e) return 0;
    if (!(cqe->flags & IORING_CQE_F_BUFFER) || !(cqe->flags & IORING_CQE_F_MORE) || cqe->res <= 0) return leave_to_swift(e);
    if (e->sending || e->swift_sends || (uint32_t)cqe->res != e->request_len) return leave_to_swift(e);
    uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    uint8_t *data = r->pool_base + (size_t)bid * r->buffer_size;
    if (memcmp(data, e->request, e->request_len) != 0) return leave_to_swift(e);
    for (int g = 0; g < 4; g++) {
        if (e->guard[g] && __atomic_load_n(e->guard[g], __ATOMIC_ACQUIRE) != e->expect[g]) return leave_to_swift(e);
    }
    struct io_uring_sqe *sqe = curing_get_sqe(r);
    if (!sqe) return leave_to_swift(e);
    if (*t0 == 0) {
        *t0 = clock_ns(CLOCK_MONOTONIC);
        // The Date's second as the server's other answers read it (coarse, once per reap).
        int64_t now = clock_ns(CLOCK_REALTIME_COARSE) / 1000000000LL;
        if (now != r->date_second) {
            format_date(now, r->date);
            r->date_second = now;
        }
    }
    if (e->date_second != r->date_second) {
        memcpy(e->answer + e->date_at, r->date, 29);
        e->date_second = r->date_second;
    }
    if (e->request_ids && e->rid_at >= 0) {
        uint64_t n = __atomic_add_fetch(e->request_ids, 1, __ATOMIC_RELAXED);
        uint8_t *p = e->answer + e->rid_at;
        for (int j = 15; j >= 0; j--) {
            unsigned nibble = (unsigned)(n & 15);
            p[j] = (uint8_t)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
            n >>= 4;
        }
    }
    io_uring_prep_send(sqe, e->fd, e->answer, e->answer_len, MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, ((uint64_t)e->gen << 32) | CURING_REPLAY_UD_BIT | (uint32_t)(e - r->replays));
    e->sending = 1;
    e->last_active = *t0;
    io_uring_buf_ring_add(r->br, data, r->buffer_size, bid, io_uring_buf_ring_mask(r->br_entries), r->br_pending);
    r->br_pending++;
    counts[e->metric < CURING_REPLAY_METRICS ? e->metric : 0]++;
    return 1;
}

unsigned curing_reap_replaying(curing_ring *r, curing_cqe *out, unsigned max, unsigned *replayed) {
    unsigned head, n = 0, seen = 0, done = 0;
    unsigned counts[CURING_REPLAY_METRICS] = {0};
    int64_t t0 = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        if (n == max) break;
        seen++;
        uint64_t ud = cqe->user_data;
        if (((uint32_t)ud & CURING_REPLAY_UD_BIT) && (ud >> 32) < 0x80000000u) {
            if (replay_sent(r, cqe, &out[n])) n++;
            continue;
        }
        if (r->replays && replay_received(r, cqe, &t0, counts)) {
            done++;
            continue;
        }
        out[n].user_data = ud;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
    }
    if (seen) io_uring_cq_advance(&r->ring, seen);
    if (done) {
        int64_t spent = clock_ns(CLOCK_MONOTONIC) - t0;
        if (spent < 0) spent = 0;
        for (int m = 0; m < CURING_REPLAY_METRICS; m++) {
            if (!counts[m]) continue;
            r->stats[m].count += counts[m];
            r->stats[m].nanos += spent * counts[m] / done;
        }
        curing_buf_ring_publish(r);
    }
    *replayed = done;
    return n;
}
