// clibav.c: wrappers and trampolines for CLibAV.h. See the header for the contract.
#include "CLibAV.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/fs.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int clibav_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}
unsigned int clibav_rename_noreplace(void) { return RENAME_NOREPLACE; }
unsigned int clibav_rename_exchange(void) { return RENAME_EXCHANGE; }

int clibav_averror(int posix_errno) { return AVERROR(posix_errno); }
int clibav_error_eof(void) { return AVERROR_EOF; }
int clibav_error_eagain(void) { return AVERROR(EAGAIN); }
int clibav_error_invaliddata(void) { return AVERROR_INVALIDDATA; }
int clibav_error_exit(void) { return AVERROR_EXIT; }
int64_t clibav_nopts_value(void) { return AV_NOPTS_VALUE; }
AVRational clibav_time_base_q(void) { return AV_TIME_BASE_Q; }
int clibav_avseek_size(void) { return AVSEEK_SIZE; }
int clibav_probe_padding_size(void) { return AVPROBE_PADDING_SIZE; }

int clibav_strerror(int err, char *buf, size_t size) {
    if (!buf || size == 0) return -1;
    int r = av_strerror(err, buf, size);
    buf[size - 1] = '\0';
    return r;
}

void clibav_channel_layout_default(AVChannelLayout *layout, int channels) {
    av_channel_layout_uninit(layout);
    av_channel_layout_default(layout, channels);
}

int clibav_channel_layout_describe(const AVChannelLayout *layout, char *buf, size_t size) {
    if (!buf || size == 0) return -1;
    int r = av_channel_layout_describe(layout, buf, size);
    buf[size - 1] = '\0';
    return r < 0 ? r : 0;
}

int clibav_channel_layout_copy(AVChannelLayout *dst, const AVChannelLayout *src) {
    av_channel_layout_uninit(dst);
    return av_channel_layout_copy(dst, src);
}

int clibav_channel_layout_valid(const AVChannelLayout *layout) {
    return layout->nb_channels > 0 && av_channel_layout_check(layout);
}

uint8_t *clibav_frame_data(const AVFrame *frame, int plane) {
    if (plane < 0 || plane >= AV_NUM_DATA_POINTERS) return NULL;
    return frame->data[plane];
}

int clibav_frame_linesize(const AVFrame *frame, int plane) {
    if (plane < 0 || plane >= AV_NUM_DATA_POINTERS) return 0;
    return frame->linesize[plane];
}

uint8_t **clibav_frame_extended_data(AVFrame *frame) { return frame->extended_data; }

// ---- Custom I/O trampolines ----
struct clibav_io {
    void *opaque;
    clibav_read_fn read;
    clibav_write_fn write;
    clibav_seek_fn seek;
};

static int clibav_io_read(void *opaque, uint8_t *buf, int size) {
    struct clibav_io *io = opaque;
    return io->read(io->opaque, buf, size);
}

// FFmpeg < 6.1 declares write_packet with a non-const buffer; 6.1 made it const.
#if LIBAVFORMAT_VERSION_MAJOR < 61
typedef uint8_t clibav_write_buffer;
#else
typedef const uint8_t clibav_write_buffer;
#endif

static int clibav_io_write(void *opaque, clibav_write_buffer *buf, int size) {
    struct clibav_io *io = opaque;
    return io->write(io->opaque, buf, size);
}

static int64_t clibav_io_seek(void *opaque, int64_t offset, int whence) {
    struct clibav_io *io = opaque;
    return io->seek(io->opaque, offset, whence);
}

AVIOContext *clibav_avio_alloc(int buffer_size, int writable, void *opaque,
                               clibav_read_fn read, clibav_write_fn write, clibav_seek_fn seek) {
    if (buffer_size <= 0) return NULL;
    struct clibav_io *io = av_mallocz(sizeof *io);
    if (!io) return NULL;
    io->opaque = opaque;
    io->read = read;
    io->write = write;
    io->seek = seek;
    unsigned char *buffer = av_malloc((size_t)buffer_size);
    if (!buffer) { av_free(io); return NULL; }
    AVIOContext *ctx = avio_alloc_context(buffer, buffer_size, writable ? 1 : 0, io,
                                          read ? clibav_io_read : NULL,
                                          write ? clibav_io_write : NULL,
                                          seek ? clibav_io_seek : NULL);
    if (!ctx) { av_free(buffer); av_free(io); return NULL; }
    return ctx;
}

void clibav_avio_free(AVIOContext **ctx) {
    if (!ctx || !*ctx) return;
    AVIOContext *c = *ctx;
    // libav may have swapped the buffer (e.g. when probing); free the one it holds now.
    av_freep(&c->buffer);
    av_freep(&c->opaque);
    avio_context_free(ctx);
}

// ---- Logging ----
static clibav_log_fn clibav_log_target = NULL;
static int clibav_log_max_level = AV_LOG_INFO;

static void clibav_log_trampoline(void *avcl, int level, const char *fmt, va_list vl) {
    clibav_log_fn target = __atomic_load_n(&clibav_log_target, __ATOMIC_ACQUIRE);
    if (!target || level > __atomic_load_n(&clibav_log_max_level, __ATOMIC_RELAXED)) return;
    // Each thread keeps its own "next line starts with a prefix" state.
    static _Thread_local int print_prefix = 1;
    char line[1024];
    av_log_format_line(avcl, level, fmt, vl, line, sizeof line, &print_prefix);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    if (n == 0) return;
    target(level, line);
}

void clibav_set_log_callback(clibav_log_fn fn, int max_level) {
    __atomic_store_n(&clibav_log_max_level, max_level, __ATOMIC_RELAXED);
    __atomic_store_n(&clibav_log_target, fn, __ATOMIC_RELEASE);
    if (fn) {
        av_log_set_level(max_level);
        av_log_set_callback(clibav_log_trampoline);
    } else {
        av_log_set_callback(av_log_default_callback);
    }
}

int clibav_malloc_trim_threshold(int bytes) { return mallopt(M_TRIM_THRESHOLD, bytes); }
