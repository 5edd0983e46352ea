// CJSONScan: stage 1 of Spool's JSON parser (JSON.Stage1) as a C kernel, chosen at run time
// by what the CPU has: AVX-512 (F, BW, VBMI2) with PCLMULQDQ, else AVX2 with PCLMULQDQ, else
// none (the Swift kernels run). Either form computes exactly what the Swift kernels
// compute, block for block: the structural offsets, the backslash bitmap, and the first
// stage-1 error with its offset (a control byte inside a string, invalid UTF-8, an
// unterminated string). The Swift kernels stay the portable fallback and the reference the
// tests and fuzzers compare to; the tests run both C forms where the CPU has AVX-512.
#ifndef CJSONSCAN_H
#define CJSONSCAN_H
#include <stddef.h>
#include <stdint.h>

enum {
    CJSON_OK = 0,
    CJSON_CONTROL_IN_STRING = 1,
    CJSON_INVALID_UTF8 = 2,
    CJSON_UNTERMINATED_STRING = 3,
};

enum {
    CJSON_KERNEL_NONE = 0,
    CJSON_KERNEL_AVX2 = 1,
    CJSON_KERNEL_AVX512 = 2,
};

/// Extra entries `positions` needs beyond one per input byte: offsets are stored as eight
/// (AVX2) or sixteen (AVX-512) lanes from the next free slot, so up to fifteen slots past
/// the last one counted are written, and the count is at most the input's length.
enum { CJSON_POSITIONS_SLACK = 16 };

typedef struct {
    /// CJSON_OK or the first error.
    int32_t error;
    /// Where the error is (a byte offset); 0 when there is none.
    uint64_t offset;
    /// Offsets written to `positions` (0 on an error).
    uint64_t written;
} cjson_stage1_result;

/// The best form this CPU runs: CJSON_KERNEL_AVX512, CJSON_KERNEL_AVX2, or CJSON_KERNEL_NONE
/// (not x86-64 with AVX2, PCLMULQDQ and BMI1: the Swift kernels run).
int cjson_stage1_best(void);

/// Stage 1 over `length` bytes (never read beyond them) with the form `kernel`
/// (CJSON_KERNEL_AVX2 up to cjson_stage1_best(); anything else traps). `positions` has
/// room for length + CJSON_POSITIONS_SLACK entries, `backslash_words` for (length + 63) / 64.
cjson_stage1_result cjson_stage1_with(int kernel, const uint8_t *input, size_t length, uint32_t *positions, uint64_t *backslash_words);

#endif
