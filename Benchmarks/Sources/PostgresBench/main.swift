// PostgresBench: statements per second through Spool's PostgresPool (libpq on the blocking
// pool, ADR 0008), for the same statements yardstick/pg_loop.c runs with libpq in a plain C
// loop: a primary-key SELECT in autocommit, and BEGIN + INSERT + COMMIT. One caller at a
// time (the latency path: what the pool's hop to a blocking-pool thread costs), then 8 at
// once on 8 connections (what the pool delivers). postgres_vs_libpq.sh starts the server
// and prints the ratios.
// Usage: PostgresBench --url URL --ops N [--table NAME]
import Postgres

func argument(_ name: String, _ fallback: String) -> String {
    let args = CommandLine.arguments
    if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
    return fallback
}

let url = argument("--url", "postgres://spool@127.0.0.1:5432/postgres")
let ops = Int(argument("--ops", "5000")) ?? 5000
let table = argument("--table", "bench_swift")

func rate(_ n: Int, _ body: () async throws -> Void) async throws -> Double {
    let start = ContinuousClock.now
    try await body()
    let d = ContinuousClock.now - start
    return Double(n) / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
}

var config = PostgresPoolConfiguration(url: url)
config.minConnections = 8
config.maxConnections = 8
let pool = try await PostgresPool.open(config)
try await pool.read { c in
    try c.execute("SET client_min_messages = warning; DROP TABLE IF EXISTS \(table); CREATE TABLE \(table) (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
}
let body = String(repeating: "x", count: 200)

let insert1 = try await rate(ops) {
    for i in 0..<ops {
        _ = try await pool.transaction { c in try c.query("INSERT INTO \(table) (id, body) VALUES ($1, $2)", [i, body]).affected }
    }
}
let select1 = try await rate(ops) {
    for i in 0..<ops {
        let n = try await pool.read { c in try c.query("SELECT body FROM \(table) WHERE id = $1", [i]).count }
        precondition(n == 1, "row \(i) missing")
    }
}
func concurrent(_ n: Int, _ work: @escaping @Sendable (Int) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { g in
        for w in 0..<8 {
            g.addTask { var i = w; while i < n { try await work(i); i += 8 } }
        }
        try await g.waitForAll()
    }
}
let insert8 = try await rate(ops) {
    try await concurrent(ops) { i in
        _ = try await pool.transaction { c in try c.query("INSERT INTO \(table) (id, body) VALUES ($1, $2)", [ops + i, body]).affected }
    }
}
let select8 = try await rate(ops) {
    try await concurrent(ops) { i in
        _ = try await pool.read { c in try c.query("SELECT body FROM \(table) WHERE id = $1", [i]).count }
    }
}
print("swift insert_c1=\(Int(insert1)) select_c1=\(Int(select1)) insert_c8=\(Int(insert8)) select_c8=\(Int(select8))")
await pool.close()
