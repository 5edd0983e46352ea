// swift-tools-version:6.1
// Spool's benchmarks: their own package, so the product never depends on a harness.
// Each benchmark prints a ratio against a named peer measured in the same run; run.sh
// drives them (make bench). See README.md, "Benchmarks".
import PackageDescription

let package = Package(
    name: "SpoolBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Spool", path: "../"),
    ],
    targets: [
        .executableTarget(
            name: "RingBench",
            dependencies: [
                .product(name: "Ring", package: "Spool"),
                .product(name: "BufferPool", package: "Spool"),
            ],
            path: "Sources/RingBench"
        ),
        .executableTarget(
            name: "SchedulerBench",
            dependencies: [.product(name: "Dispatcher", package: "Spool")],
            path: "Sources/SchedulerBench"
        ),
        .executableTarget(
            name: "PostgresBench",
            dependencies: [.product(name: "Postgres", package: "Spool")],
            path: "Sources/PostgresBench"
        ),
        .executableTarget(
            name: "S3Bench",
            dependencies: [
                .product(name: "S3", package: "Spool"),
                .product(name: "Storage", package: "Spool"),
            ],
            path: "Sources/S3Bench"
        ),
        .executableTarget(
            name: "JSONBench",
            dependencies: [.product(name: "JSON", package: "Spool")],
            path: "Sources/JSONBench"
        ),
    ],
    swiftLanguageModes: [.v6]
)
