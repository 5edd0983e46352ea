// CJSONScan: stage 1 of Spool's JSON parser (JSON.Stage1) as a C kernel that uses AVX2 for
// classification and PCLMULQDQ for the in-string prefix XOR, chosen at run time when the
// CPU has both. It computes exactly what the Swift kernels compute, block for block: the
// structural offsets, the backslash bitmap, and the first stage-1 error with its offset
// (a control byte inside a string, invalid UTF-8, an unterminated string). The Swift
// kernels stay the portable fallback and the reference the tests and fuzzers compare to.
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

/// Extra entries `positions` needs beyond one per input byte: each mask byte's offsets are
/// stored as eight lanes from the next free slot, so up to seven slots past the last one
/// counted are written, and the count is at most the input's length.
enum { CJSON_POSITIONS_SLACK = 8 };

typedef struct {
    /// CJSON_OK or the first error.
    int32_t error;
    /// Where the error is (a byte offset); 0 when there is none.
    uint64_t offset;
    /// Offsets written to `positions` (0 on an error).
    uint64_t written;
} cjson_stage1_result;

/// 1 when this CPU runs the kernel (x86-64 with AVX2 and PCLMULQDQ), else 0.
int cjson_stage1_available(void);

/// Stage 1 over `length` bytes (never read beyond them). `positions` has room for
/// length + CJSON_POSITIONS_SLACK entries, `backslash_words` for (length + 63) / 64.
/// Only call when cjson_stage1_available() says 1.
cjson_stage1_result cjson_stage1(const uint8_t *input, size_t length, uint32_t *positions, uint64_t *backslash_words);

#endif
