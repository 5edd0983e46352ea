// curing_internal.h: the ring as curing.c and replay.c see it (not exported to Swift).
#ifndef CURING_INTERNAL_H
#define CURING_INTERNAL_H
#include <liburing.h>
#include "CURing.h"

struct curing_ring {
    struct io_uring ring;
    struct io_uring_buf_ring *br;   // provided-buffer ring, NULL until set up
    size_t br_bytes;
    unsigned br_entries;
    int br_group;
    int br_pending;                 // buffers added since the last publish
    int ring_fd_registered;         // io_uring_register_ring_fd succeeded

    // Replayed answers (replay.c); NULL/0 until curing_replays_setup.
    curing_replay *replays;
    unsigned replays_cap;
    uint32_t replays_free;          // first free entry + 1 (0: none)
    uint32_t *replay_of_slot;       // receive slot -> entry + 1 (0: none)
    unsigned slot_count;
    uint8_t *pool_base;
    uint32_t buffer_size;
    int64_t date_second;            // the second `date` spells (-1: none yet)
    char date[29];
    curing_replay_stat stats[CURING_REPLAY_METRICS];
};

/// An SQE, submitting once to make room when the SQ is full (NULL if still none).
struct io_uring_sqe *curing_get_sqe(curing_ring *r);
void curing_replays_destroy(curing_ring *r);

#endif
