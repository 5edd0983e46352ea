// jsonscan.c: the stage-1 kernels in C (see CJSONScan.h), in two forms that share every
// step but two. Each 64-byte block is classified into 64-bit masks: with AVX2 as two 32-byte
// vectors whose compares are movemasked and joined, with AVX-512BW as one vector whose
// compares give the masks directly. A carry-less multiply by all ones gives the prefix XOR
// of the quote mask (bit i set while inside a string). The structural offsets are stored
// without a branch on the bits: with AVX2 a mask byte at a time from a table of bit
// positions; with AVX-512 VBMI2 by compressing the block's 64 byte indexes to the set bits
// in one instruction and widening them sixteen at a time. The order of checks and the
// carries from block to block follow Sources/JSON/StructuralIndex.swift exactly, so the
// errors and offsets are the same, whichever form runs.
#include "CJSONScan.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

static int detect_best(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("bmi")))
        return CJSON_KERNEL_NONE;
    // compiler-rt reports the AVX-512 features only when the OS saves their registers too.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2"))
        return CJSON_KERNEL_AVX512;
    return CJSON_KERNEL_AVX2;
}

/// Chosen once, when the library loads (before any thread can ask).
static int best_kernel;

__attribute__((constructor)) static void pick_kernel(void) { best_kernel = detect_best(); }

int cjson_stage1_best(void) { return best_kernel; }

#define TARGET __attribute__((target("avx2,pclmul,bmi,popcnt")))
#define TARGET512 __attribute__((target("avx2,avx512f,avx512bw,avx512vbmi2,pclmul,bmi,popcnt")))

typedef struct {
    uint64_t quote, backslash, whitespace, op, control;
    /// Bytes with the top bit set (not ASCII).
    uint64_t high;
} masks;

/// The two halves' movemasks as one 64-bit mask. The empty asm hides the value's origin:
/// without it clang folds the ORs of several masks back into vectors of single bits,
/// rebuilt a byte at a time (measured: three times slower than the whole kernel should be).
TARGET static inline uint64_t join(__m256i lo, __m256i hi) {
    uint64_t m = (uint64_t)(uint32_t)_mm256_movemask_epi8(lo) | ((uint64_t)(uint32_t)_mm256_movemask_epi8(hi) << 32);
    __asm__("" : "+r"(m));
    return m;
}

TARGET static inline __m256i eq(__m256i v, char c) { return _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c)); }

TARGET static inline void classify_half(__m256i v, __m256i *quote, __m256i *backslash, __m256i *ws, __m256i *op, __m256i *control) {
    *quote = eq(v, '"');
    *backslash = eq(v, '\\');
    *ws = _mm256_or_si256(_mm256_or_si256(eq(v, ' '), eq(v, '\n')), _mm256_or_si256(eq(v, '\r'), eq(v, '\t')));
    // '[' | 0x20 == '{' and ']' | 0x20 == '}', and no other byte maps onto those two.
    __m256i folded = _mm256_or_si256(v, _mm256_set1_epi8(0x20));
    *op = _mm256_or_si256(_mm256_or_si256(eq(folded, '{'), eq(folded, '}')), _mm256_or_si256(eq(v, ','), eq(v, ':')));
    // Bytes below 0x20: max(v, 0x1F) == 0x1F exactly for them.
    __m256i limit = _mm256_set1_epi8(0x1F);
    *control = _mm256_cmpeq_epi8(_mm256_max_epu8(v, limit), limit);
}

TARGET static inline masks classify(const uint8_t *p) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)p), hi = _mm256_loadu_si256((const __m256i *)(p + 32));
    __m256i q0, b0, w0, o0, c0, q1, b1, w1, o1, c1;
    classify_half(lo, &q0, &b0, &w0, &o0, &c0);
    classify_half(hi, &q1, &b1, &w1, &o1, &c1);
    masks m;
    m.quote = join(q0, q1);
    m.backslash = join(b0, b1);
    m.whitespace = join(w0, w1);
    m.op = join(o0, o1);
    m.control = join(c0, c1);
    m.high = join(lo, hi);
    return m;
}

/// The same masks from one 64-byte vector: AVX-512BW compares yield the bits themselves.
TARGET512 static inline masks classify512(const uint8_t *p) {
    __m512i v = _mm512_loadu_si512((const void *)p);
    masks m;
    m.quote = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('"'));
    m.backslash = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\\'));
    m.whitespace = _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(' ')) | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\n'))
        | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\r')) | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\t'));
    __m512i folded = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
    m.op = _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8('{')) | _mm512_cmpeq_epi8_mask(folded, _mm512_set1_epi8('}'))
        | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(',')) | _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(':'));
    m.control = _mm512_cmplt_epu8_mask(v, _mm512_set1_epi8(0x20));
    m.high = _mm512_movepi8_mask(v);
    return m;
}

TARGET static inline uint64_t prefix_xor(uint64_t x) {
    return (uint64_t)_mm_cvtsi128_si64(_mm_clmulepi64_si128(_mm_set_epi64x(0, (int64_t)x), _mm_set1_epi8((char)0xFF), 0));
}

/// The UTF-8 state carried between blocks (RFC 3629: no overlongs, no surrogates, nothing
/// above U+10FFFF), the same automaton as the Swift UTF8Validator.
typedef struct { int need; uint8_t lo, hi; } utf8_state;

/// Feeds byte `b` at `at` to the automaton; returns -1, or `at` when the byte is refused.
static inline int64_t utf8_step(utf8_state *s, uint8_t b, uint64_t at) {
    if (s->need == 0) {
        if (b >= 0xC2 && b <= 0xDF) { s->need = 1; s->lo = 0x80; s->hi = 0xBF; }
        else if (b == 0xE0) { s->need = 2; s->lo = 0xA0; s->hi = 0xBF; }
        else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) { s->need = 2; s->lo = 0x80; s->hi = 0xBF; }
        else if (b == 0xED) { s->need = 2; s->lo = 0x80; s->hi = 0x9F; }
        else if (b == 0xF0) { s->need = 3; s->lo = 0x90; s->hi = 0xBF; }
        else if (b >= 0xF1 && b <= 0xF3) { s->need = 3; s->lo = 0x80; s->hi = 0xBF; }
        else if (b == 0xF4) { s->need = 3; s->lo = 0x80; s->hi = 0x8F; }
        else return (int64_t)at;
        return -1;
    }
    if (b < s->lo || b > s->hi) return (int64_t)at;
    s->need -= 1;
    s->lo = 0x80;
    s->hi = 0xBF;
    return -1;
}

/// Runs the automaton over the first `n` bytes of a block at `offset`, visiting only the
/// bytes that are not ASCII (`high`, one bit per byte): an ASCII byte changes nothing
/// unless a sequence is open, and then it is refused, so the gap before the next visited
/// byte (or the end) is checked instead of read. Returns -1 when the bytes are valid so
/// far, else the offset of the first bad byte: what a byte-by-byte walk returns.
static int64_t utf8_validate(utf8_state *s, const uint8_t *p, uint64_t high, size_t n, uint64_t offset) {
    if (n < 64) high &= (1ULL << n) - 1;
    size_t next = 0;   // the byte after the last one visited
    while (high != 0) {
        size_t i = (size_t)__builtin_ctzll(high);
        high &= high - 1;
        if (s->need != 0 && i != next) return (int64_t)(offset + next);
        int64_t bad = utf8_step(s, p[i], offset + i);
        if (bad >= 0) return bad;
        next = i + 1;
    }
    if (s->need != 0 && next < n) return (int64_t)(offset + next);
    return -1;
}

/// For each byte value, the positions of its set bits in ascending order, one per byte of
/// the word (the bytes past its popcount are zero). Built once at load time.
static uint64_t bit_positions[256];

__attribute__((constructor)) static void build_bit_positions(void) {
    for (unsigned v = 0; v < 256; v++) {
        uint64_t packed = 0;
        unsigned n = 0;
        for (unsigned bit = 0; bit < 8; bit++)
            if (v & (1u << bit)) packed |= (uint64_t)bit << (8 * n++);
        bit_positions[v] = packed;
    }
}

/// Stores the offsets of the set bits of `bits` (block at `start`) from `out`, a byte of the
/// mask at a time: the byte's bit positions come from a table, are widened to eight 32-bit
/// lanes, offset and stored at once, and `out` moves on by the byte's popcount. Always
/// eight steps, with no branch on the bits (the earlier loop, eight trailing-zero counts per
/// turn, mispredicted its exit once a block and serialized on clearing the lowest bit).
/// Lanes past the popcount are written too (with junk) and overwritten by the next step.
TARGET static inline uint32_t *flatten(uint32_t *out, uint32_t start, uint64_t bits) {
    __m256i base = _mm256_set1_epi32((int)start);
    const __m256i eight = _mm256_set1_epi32(8);
    for (int k = 0; k < 8; k++) {
        unsigned byte = (unsigned)(bits >> (8 * k)) & 0xFF;
        __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_positions[byte]));
        _mm256_storeu_si256((__m256i *)out, _mm256_add_epi32(lanes, base));
        out += __builtin_popcount(byte);
        base = _mm256_add_epi32(base, eight);
    }
    return out;
}

/// The same offsets from one compress: the block's byte indexes 0...63 packed down to the
/// set bits (VBMI2), widened to 32-bit lanes sixteen at a time and offset by `start`. The
/// first sixteen lanes are always stored, later groups only while there are offsets left,
/// so at most fifteen slots past the last counted one are written.
TARGET512 static inline uint32_t *flatten512(uint32_t *out, uint32_t start, uint64_t bits) {
    const __m512i iota = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48,
                                         47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
                                         31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                         15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i packed = _mm512_maskz_compress_epi8(bits, iota);
    __m512i base = _mm512_set1_epi32((int)start);
    int n = __builtin_popcountll(bits);
    _mm512_storeu_si512((void *)out, _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm512_castsi512_si128(packed)), base));
    if (n > 16) {
        _mm512_storeu_si512((void *)(out + 16), _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(packed, 1)), base));
        if (n > 32) {
            _mm512_storeu_si512((void *)(out + 32), _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(packed, 2)), base));
            if (n > 48)
                _mm512_storeu_si512((void *)(out + 48), _mm512_add_epi32(_mm512_cvtepu8_epi32(_mm512_extracti32x4_epi32(packed, 3)), base));
        }
    }
    return out + n;
}

typedef masks (*classify_fn)(const uint8_t *);
typedef uint32_t *(*flatten_fn)(uint32_t *, uint32_t, uint64_t);

/// The pass over all blocks, shared by both forms: it is inlined into each form's entry
/// below with that form's classify and flatten, and compiled there for that form's
/// instruction set (so the AVX2 form never holds an AVX-512 instruction).
__attribute__((always_inline)) static inline cjson_stage1_result scan(const uint8_t *input, size_t length, uint32_t *positions,
                                                                      uint64_t *backslash_words, classify_fn classify, flatten_fn flatten) {
    cjson_stage1_result r = { CJSON_OK, 0, 0 };
    size_t blocks = (length + 63) / 64;
    uint32_t *out = positions;
    utf8_state utf8 = { 0, 0x80, 0xBF };
    int escape_carry = 0, in_string_carry = 0, scalar_carry = 0;
    uint8_t tail[64];
    for (size_t block = 0; block < blocks; block++) {
        size_t start = block * 64;
        size_t count = length - start < 64 ? length - start : 64;
        const uint8_t *p = input + start;
        if (count < 64) {
            // The last partial block, padded with spaces in a copy (never read past the input).
            memset(tail, 0x20, sizeof tail);
            memcpy(tail, p, count);
            p = tail;
        }
        masks m = classify(p);
        backslash_words[block] = m.backslash;

        // A backslash that is not itself escaped escapes the next byte.
        uint64_t escaped = escape_carry ? 1 : 0;
        escape_carry = 0;
        uint64_t bs = m.backslash;
        while (bs != 0) {
            int at = __builtin_ctzll(bs);
            bs &= bs - 1;
            if (escaped & (1ULL << at)) continue;
            if (at == 63) escape_carry = 1; else escaped |= 1ULL << (at + 1);
        }
        uint64_t quotes = m.quote & ~escaped;
        uint64_t in_string = prefix_xor(quotes);
        if (in_string_carry) in_string = ~in_string;
        in_string_carry = (int)(in_string >> 63);

        if (m.control & in_string) {
            r.error = CJSON_CONTROL_IN_STRING;
            r.offset = start + (uint64_t)__builtin_ctzll(m.control & in_string);
            return r;
        }
        if (m.high != 0) {
            int64_t bad = utf8_validate(&utf8, input + start, m.high, count, start);
            if (bad >= 0) {
                r.error = CJSON_INVALID_UTF8;
                r.offset = (uint64_t)bad;
                return r;
            }
        } else if (utf8.need != 0) {
            r.error = CJSON_INVALID_UTF8;
            r.offset = start;
            return r;
        }

        uint64_t ops = m.op & ~in_string;
        uint64_t scalar = ~(m.whitespace | m.op | quotes | in_string);
        uint64_t scalar_start = scalar & ~((scalar << 1) | (uint64_t)scalar_carry);
        scalar_carry = (int)(scalar >> 63);
        uint64_t structural = ops | quotes | scalar_start;
        if (count < 64) structural &= (1ULL << count) - 1;
        out = flatten(out, (uint32_t)start, structural);
    }
    if (utf8.need != 0) {
        r.error = CJSON_INVALID_UTF8;
        r.offset = length;
        return r;
    }
    if (in_string_carry) {
        r.error = CJSON_UNTERMINATED_STRING;
        r.offset = length;
        return r;
    }
    r.written = (uint64_t)(out - positions);
    return r;
}

TARGET static cjson_stage1_result scan_avx2(const uint8_t *input, size_t length, uint32_t *positions, uint64_t *backslash_words) {
    return scan(input, length, positions, backslash_words, classify, flatten);
}

TARGET512 static cjson_stage1_result scan_avx512(const uint8_t *input, size_t length, uint32_t *positions, uint64_t *backslash_words) {
    return scan(input, length, positions, backslash_words, classify512, flatten512);
}

cjson_stage1_result cjson_stage1_with(int kernel, const uint8_t *input, size_t length, uint32_t *positions, uint64_t *backslash_words) {
    // Callers pass a kernel no better than cjson_stage1_best(); anything else is a programming error.
    if (kernel < CJSON_KERNEL_AVX2 || kernel > cjson_stage1_best()) __builtin_trap();
    if (kernel == CJSON_KERNEL_AVX512) return scan_avx512(input, length, positions, backslash_words);
    return scan_avx2(input, length, positions, backslash_words);
}

#else

int cjson_stage1_best(void) { return CJSON_KERNEL_NONE; }

cjson_stage1_result cjson_stage1_with(int kernel, const uint8_t *input, size_t length, uint32_t *positions, uint64_t *backslash_words) {
    // Callers ask cjson_stage1_best() first; reaching this is a programming error.
    (void)kernel; (void)input; (void)length; (void)positions; (void)backslash_words;
    __builtin_trap();
}

#endif
