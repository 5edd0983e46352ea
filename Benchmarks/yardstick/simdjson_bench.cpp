// simdjson_bench.cpp: the simdjson yardsticks for decoding the job records written by
// gen_jobs.py, On-Demand and DOM. Each iteration parses the whole file with one reused parser
// (ondemand::parser, or dom::parser, which validates the whole document first, as Spool's
// parser does), walks the array and reads, per record: id (string, its unescaped length), priority (int64), progress
// (double, summed apart so the read is not dropped), input.bytes (uint64) and every output's
// width and height (int64). The checksum is the one gen_jobs.py prints. One warm-up parse each,
// then ITERATIONS timed parses of each, interleaved.
// Prints: records=N checksum=C progress_sum=S bytes=B best_us=T median_us=T mb_per_s=R
//         dom_best_us=T dom_median_us=T (On-Demand first, then DOM)
// Usage: simdjson_bench FILE ITERATIONS
// Build: g++ -O3 -std=c++17 -o simdjson_bench simdjson_bench.cpp -lsimdjson
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

using namespace simdjson;

#define BENCH_STR2(x) #x
#define BENCH_STR(x) BENCH_STR2(x)

struct Totals {
    uint64_t records = 0;
    uint64_t checksum = 0;  // unsigned: wraps at 2^64 like gen_jobs.py's
    double progress = 0;
};

static Totals decode(ondemand::parser &parser, const padded_string &json) {
    Totals t;
    ondemand::document doc = parser.iterate(json);
    for (ondemand::object rec : doc.get_array()) {
        std::string_view id = rec["id"].get_string();
        t.checksum += id.size();
        t.checksum += uint64_t(int64_t(rec["priority"].get_int64()));
        t.progress += double(rec["progress"].get_double());
        ondemand::object input = rec["input"].get_object();
        t.checksum += uint64_t(input["bytes"].get_uint64());
        for (ondemand::object out : rec["outputs"].get_array()) {
            t.checksum += uint64_t(int64_t(out["width"].get_int64()));
            t.checksum += uint64_t(int64_t(out["height"].get_int64()));
        }
        t.records++;
    }
    return t;
}

static Totals decode_dom(dom::parser &parser, const padded_string &json) {
    Totals t;
    dom::element doc = parser.parse(json);
    for (dom::object rec : doc.get_array()) {
        std::string_view id = rec["id"].get_string();
        t.checksum += id.size();
        t.checksum += uint64_t(int64_t(rec["priority"].get_int64()));
        t.progress += double(rec["progress"].get_double());
        dom::object input = rec["input"].get_object();
        t.checksum += uint64_t(input["bytes"].get_uint64());
        for (dom::object out : rec["outputs"].get_array()) {
            t.checksum += uint64_t(int64_t(out["width"].get_int64()));
            t.checksum += uint64_t(int64_t(out["height"].get_int64()));
        }
        t.records++;
    }
    return t;
}

static double median_of(std::vector<double> &us) {
    std::sort(us.begin(), us.end());
    size_t n = us.size();
    return n % 2 ? us[n / 2] : (us[n / 2 - 1] + us[n / 2]) / 2;
}

int main(int argc, char **argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: simdjson_bench FILE ITERATIONS\n"); return 2; }
    int iterations = std::atoi(argv[2]);
    if (iterations < 1) { std::fprintf(stderr, "ITERATIONS must be at least 1\n"); return 2; }
    try {
        padded_string json = padded_string::load(argv[1]);
        ondemand::parser parser;
        dom::parser dparser;
        Totals first = decode(parser, json);  // warm-up; also the reference result
        Totals firstDOM = decode_dom(dparser, json);
        if (firstDOM.checksum != first.checksum || firstDOM.records != first.records) {
            std::fprintf(stderr, "DOM and On-Demand disagree\n");
            return 1;
        }
        std::vector<double> us, dus;
        us.reserve(size_t(iterations));
        dus.reserve(size_t(iterations));
        for (int i = 0; i < iterations; i++) {
            auto t0 = std::chrono::steady_clock::now();
            Totals t = decode(parser, json);
            auto t1 = std::chrono::steady_clock::now();
            Totals d = decode_dom(dparser, json);
            auto t2 = std::chrono::steady_clock::now();
            if (t.checksum != first.checksum || t.records != first.records || t.progress != first.progress ||
                d.checksum != first.checksum || d.records != first.records) {
                std::fprintf(stderr, "iteration %d gave a different result\n", i);
                return 1;
            }
            us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            dus.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
        }
        double median = median_of(us), dmedian = median_of(dus);
        std::printf("records=%llu checksum=%llu progress_sum=%.4f bytes=%zu best_us=%.1f median_us=%.1f mb_per_s=%.1f"
                    " dom_best_us=%.1f dom_median_us=%.1f\n",
                    (unsigned long long)first.records, (unsigned long long)first.checksum, first.progress,
                    json.size(), us[0], median, double(json.size()) / median, dus[0], dmedian);
        // On-Demand's value parsing is inlined from the header and compiled for the kernel the
        // compiler flags allow (scalar "fallback" without -march); the structural indexing
        // (stage 1) runs in libsimdjson with the kernel picked at run time.
        std::fprintf(stderr, "simdjson %d.%d.%d, On-Demand compiled for %s, run-time kernel %s\n",
                     SIMDJSON_VERSION_MAJOR, SIMDJSON_VERSION_MINOR, SIMDJSON_VERSION_REVISION,
                     BENCH_STR(SIMDJSON_BUILTIN_IMPLEMENTATION), get_active_implementation()->name().c_str());
    } catch (const simdjson_error &e) {
        std::fprintf(stderr, "simdjson error: %s\n", e.what());
        return 1;
    }
    return 0;
}
