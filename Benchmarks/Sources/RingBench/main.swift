// RingBench: NOP round trips through the event loop, async/await API vs callback API.
//
// Both layers pay the same io_uring_enter per round trip; the ratio is the cost of the
// async adapter (continuation park + resume on the loop executor). Rounds alternate
// A B A B and the medians are compared, because this machine drifts 20-40 % in minutes.
// Usage: RingBench nop [--ops N] [--rounds R] [--inflight K]
import BufferPool
import Ring
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

final class Gate: @unchecked Sendable {
    private var m = pthread_mutex_t()
    private var c = pthread_cond_t()
    private var open = false
    init() { pthread_mutex_init(&m, nil); pthread_cond_init(&c, nil) }
    func signal() { pthread_mutex_lock(&m); open = true; pthread_cond_signal(&c); pthread_mutex_unlock(&m) }
    func wait() { pthread_mutex_lock(&m); while !open { pthread_cond_wait(&c, &m) }; pthread_mutex_unlock(&m) }
}

final class Chain {
    var left: Int
    var failures = 0
    /// Built once per chain, so resubmitting allocates nothing (a fresh closure per
    /// submission would allocate its context every time).
    var step: EventLoop.Callback?
    init(_ n: Int) { left = n }
}

/// `inflight` callback chains of NOPs; returns seconds.
func callbackRound(_ loop: EventLoop, ops: Int, inflight: Int) -> Double {
    let gate = Gate()
    let t0 = now()
    loop.execute {
        let chains = (0..<inflight).map { _ in Chain(ops / inflight) }
        var running = inflight
        for chain in chains {
            chain.step = { r in   // a cycle, broken when the chain ends
                if r.res != 0 { chain.failures += 1 }
                chain.left -= 1
                if chain.left > 0 {
                    loop.submitNop(chain.step!)
                } else {
                    chain.step = nil
                    running -= 1
                    if running == 0 { gate.signal() }
                }
            }
            loop.submitNop(chain.step!)
        }
    }
    gate.wait()
    return now() - t0
}

/// `inflight` tasks awaiting NOPs; returns seconds.
func asyncRound(_ loop: EventLoop, ops: Int, inflight: Int, cancellable: Bool = false) -> Double {
    let gate = Gate()
    let t0 = now()
    let per = ops / inflight
    loop.spawn {
        await withTaskGroup(of: Int.self) { group in
            for _ in 0..<inflight {
                group.addTask {
                    var bad = 0
                    for _ in 0..<per {
                        let r = await loop.nop(cancellable: cancellable)
                        if r.res != 0 { bad += 1 }
                    }
                    return bad
                }
            }
            var bad = 0
            for await b in group { bad += b }
            precondition(bad == 0, "NOPs failed")
        }
        gate.signal()
    }
    gate.wait()
    return now() - t0
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func option(_ name: String, _ fallback: Int) -> Int {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) { return v }
    return fallback
}

let mode = CommandLine.arguments.dropFirst().first ?? "nop"
guard mode == "nop" else {
    print("usage: RingBench nop [--ops N] [--rounds R] [--inflight K]")
    exit(2)
}
let ops = option("--ops", 1_000_000)
// `--only async|callback N`: run one path for N ops and exit (for malloc counting with
// `perf stat -e probe_libc:malloc`).
if let i = CommandLine.arguments.firstIndex(of: "--only"), i + 1 < CommandLine.arguments.count {
    let l = try EventLoop.start()
    let which = CommandLine.arguments[i + 1]
    _ = which == "async" ? asyncRound(l, ops: ops, inflight: 64) : callbackRound(l, ops: ops, inflight: 64)
    l.shutdown()
    exit(0)
}
let rounds = option("--rounds", 5)
let loop = try EventLoop.start()
print("backend: \(loop.backendKind) (\(loop.backendSummary))")
for inflight in [1, option("--inflight", 64)] {
    // Warm up both paths (and check they complete) before timing.
    _ = callbackRound(loop, ops: inflight * 1000, inflight: inflight)
    _ = asyncRound(loop, ops: inflight * 1000, inflight: inflight)
    var a: [Double] = [], c: [Double] = [], ac: [Double] = []
    for _ in 0..<rounds {
        c.append(Double(ops) / callbackRound(loop, ops: ops, inflight: inflight))
        a.append(Double(ops) / asyncRound(loop, ops: ops, inflight: inflight))
        ac.append(Double(ops) / asyncRound(loop, ops: ops, inflight: inflight, cancellable: true))
    }
    let ma = median(a), mc = median(c), mac = median(ac)
    let jobs0 = loop.jobsRun
    _ = asyncRound(loop, ops: 100_000, inflight: inflight)
    let jobsPerOp = Double(loop.jobsRun - jobs0) / 100_000
    print("  jobs per async nop: \(jobsPerOp)")
    let ratio: Double = ma / mc
    let line = "nop round trips, \(inflight) in flight: async \(Int(ma)) ops/s (\(Int(1e9 / ma)) ns/op), "
        + "callback \(Int(mc)) ops/s (\(Int(1e9 / mc)) ns/op), async/callback = \(Double(Int(ratio * 100)) / 100)x"
    print(line)
    let ratioCancellable: Double = mac / mc
    print("  async with a task-cancellation handler (the path of receives, sends, timers): \(Int(mac)) ops/s (\(Int(1e9 / mac)) ns/op), async/callback = \(Double(Int(ratioCancellable * 100)) / 100)x")
}
loop.shutdown()
