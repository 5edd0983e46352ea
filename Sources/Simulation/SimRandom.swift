// Simulation.SimRandom: the one source of randomness of a simulated run, and the fault
// weights drawn from it.
//
// A run is a pure function of its seed: every random choice (latencies, short reads and
// writes, resets, ENOSPC, completion order, and what the scenario does) comes from one
// xoshiro256** generator seeded through SplitMix64. `FaultWeights` is drawn first, in the
// manner of swarm testing: each kind of fault is switched off for about a third of the
// seeds and given a random strength otherwise, so some runs are calm and some are stormy.
// Non-goals: cryptographic quality; streams that stay stable across code changes (a seed
// replays on the same commit).

/// xoshiro256** seeded by SplitMix64.
public struct SimRandom: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// A value in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }

    /// A value in `range`.
    public mutating func int(in range: ClosedRange<Int>) -> Int { range.lowerBound + below(range.count) }
    public mutating func int64(in range: ClosedRange<Int64>) -> Int64 {
        range.lowerBound + Int64(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    /// True with probability `permille` / 1000.
    public mutating func chance(_ permille: Int) -> Bool { permille > 0 && below(1000) < permille }
}

/// How often each fault happens in one run (per mille of the chances it gets).
public struct FaultWeights: Sendable, CustomStringConvertible {
    /// A network arrival or file completion that takes 10–400 ms instead of microseconds.
    public var delay = 0
    /// A send that resets its connection (both ends see ECONNRESET).
    public var reset = 0
    /// A receive that delivers only part of what is there.
    public var shortRead = 0
    /// A send or file write that takes only part of what it was given.
    public var shortWrite = 0
    /// A file write that fails with ENOSPC.
    public var noSpace = 0
    /// A batch of completions handed to the loop in shuffled order (per connection and
    /// per operation order kept, as io_uring keeps it).
    public var reorder = 0

    public init() {}

    /// Swarm weights: each fault off for about a third of the seeds, else a random strength.
    public init(drawingFrom rng: inout SimRandom) {
        func draw(_ max: Int) -> Int { rng.below(3) == 0 ? 0 : rng.int(in: 1...max) }
        delay = draw(100)
        reset = draw(15)
        shortRead = draw(600)
        shortWrite = draw(600)
        noSpace = draw(300)
        reorder = draw(800)
    }

    /// No fault at all: every request must then succeed.
    public var isCalm: Bool { delay == 0 && reset == 0 }

    public var description: String {
        "delay=\(delay) reset=\(reset) shortRead=\(shortRead) shortWrite=\(shortWrite) noSpace=\(noSpace) reorder=\(reorder) (per mille)"
    }
}
