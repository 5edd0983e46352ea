// CLibAV: the only door from Spool to FFmpeg 5.1's libavformat, libavcodec, libavutil,
// libswscale and libswresample (Debian 12 -dev packages). Only the Media module imports it.
//
// The libav headers are re-exported so Media can use the structs directly. What Swift
// cannot import is wrapped here with a `clibav_` prefix:
//  - function-like macros: AVERROR(e), AVERROR_EOF, AVERROR_INVALIDDATA, AV_NOPTS_VALUE,
//    AV_TIME_BASE_Q, av_err2str (a compound literal), AVSEEK_SIZE;
//  - AVFrame's data/linesize arrays (imported as 8-tuples) by plane index;
//  - AVIOContext callbacks: Swift supplies one set of callbacks with a `const` write buffer;
//    C trampolines adapt them to whatever the linked libav expects (5.1 passes a non-const
//    buffer to write_packet, 6.1+ a const one), so the Swift side builds against both;
//  - av_log: a C callback formats each line with av_log_format_line and hands it to one
//    registered Swift function, so libav's logging goes to swift-log, not stderr.
#ifndef CLIBAV_H
#define CLIBAV_H

#include <stddef.h>
#include <stdint.h>
#include <libavformat/avformat.h>
#include <libavformat/avio.h>
#include <libavcodec/avcodec.h>
#include <libavutil/avutil.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/mathematics.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libavutil/samplefmt.h>
#include <libswscale/swscale.h>
#include <libswresample/swresample.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- Error codes and constants (macros Swift cannot import) ----
/// AVERROR(e): the libav error code for a POSIX errno value.
int clibav_averror(int posix_errno);
int clibav_error_eof(void);          ///< AVERROR_EOF
int clibav_error_eagain(void);       ///< AVERROR(EAGAIN)
int clibav_error_invaliddata(void);  ///< AVERROR_INVALIDDATA
int clibav_error_exit(void);         ///< AVERROR_EXIT (what an interrupt callback causes)
int64_t clibav_nopts_value(void);    ///< AV_NOPTS_VALUE
AVRational clibav_time_base_q(void); ///< AV_TIME_BASE_Q (1/1000000)
int clibav_avseek_size(void);        ///< AVSEEK_SIZE (the "tell me the size" whence)
int clibav_probe_padding_size(void); ///< AVPROBE_PADDING_SIZE
/// av_strerror into `buf` (always NUL-terminated); returns 0 if libav knew the code.
int clibav_strerror(int err, char *buf, size_t size);

// ---- Channel layouts (FFmpeg 5.1 AVChannelLayout API) ----
/// Sets `layout` to the default native layout for `channels` (mono, stereo, 5.1 ...).
void clibav_channel_layout_default(AVChannelLayout *layout, int channels);
/// A readable description ("stereo", "5.1(side)") into `buf`; 0 on success.
int clibav_channel_layout_describe(const AVChannelLayout *layout, char *buf, size_t size);
/// Copies `src` into `dst` (uninitializing `dst` first); 0 or a negative AVERROR.
int clibav_channel_layout_copy(AVChannelLayout *dst, const AVChannelLayout *src);
/// True when the layout is valid and describes at least one channel.
int clibav_channel_layout_valid(const AVChannelLayout *layout);

// ---- AVFrame planes ----
uint8_t *clibav_frame_data(const AVFrame *frame, int plane);
int clibav_frame_linesize(const AVFrame *frame, int plane);
/// frame->extended_data as the pointer array swr_convert and av_audio_fifo expect.
uint8_t **clibav_frame_extended_data(AVFrame *frame);

// ---- Custom I/O ----
/// Swift-side callbacks. `opaque` is whatever the caller registered (an unmanaged object).
/// Read returns bytes read, 0 is never returned (use AVERROR_EOF), or a negative AVERROR.
typedef int (*clibav_read_fn)(void *opaque, uint8_t *buf, int size);
/// Write always sees a const buffer, whatever the linked libav's signature is.
typedef int (*clibav_write_fn)(void *opaque, const uint8_t *buf, int size);
typedef int64_t (*clibav_seek_fn)(void *opaque, int64_t offset, int whence);

/// Allocates an AVIOContext with an av_malloc'd buffer of `buffer_size` bytes whose
/// callbacks trampoline into the given functions (any may be NULL). Returns NULL on
/// allocation failure. Free it only with clibav_avio_free.
AVIOContext *clibav_avio_alloc(int buffer_size, int writable, void *opaque,
                               clibav_read_fn read, clibav_write_fn write, clibav_seek_fn seek);
/// Flushes nothing; frees the current buffer (libav may have replaced the one allocated),
/// the trampoline record and the context, and sets *ctx to NULL. Safe on NULL.
void clibav_avio_free(AVIOContext **ctx);

// ---- Logging ----
/// Receives one formatted libav log line (no trailing newline) and its AV_LOG_* level.
typedef void (*clibav_log_fn)(int level, const char *line);
/// Routes av_log through `fn` for messages at or below `max_level`; NULL restores
/// libav's default callback. Lines are formatted with av_log_format_line.
void clibav_set_log_callback(clibav_log_fn fn, int max_level);

// ---- Output files (not libav; Media's only C door) ----
/// renameat2(2) through syscall(2), which Swift cannot call (variadic) and glibc declares
/// only under _GNU_SOURCE. Returns 0, or -1 with errno (EINVAL/ENOSYS where the
/// filesystem or kernel lacks the flag).
int clibav_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
unsigned int clibav_rename_noreplace(void);  ///< RENAME_NOREPLACE
unsigned int clibav_rename_exchange(void);   ///< RENAME_EXCHANGE

// ---- The C allocator (not libav; Media.ProcessMemory) ----
/// mallopt(M_TRIM_THRESHOLD, bytes): Swift's Glibc module does not carry <malloc.h>.
/// Returns mallopt's result (1 on success).
int clibav_malloc_trim_threshold(int bytes);

#ifdef __cplusplus
}
#endif
#endif
