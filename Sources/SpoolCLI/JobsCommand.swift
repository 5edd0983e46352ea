// `spool jobs list|show|cancel|retry`: the jobs over the API (ServerConnection for the
// server and key).
import ArgumentParser
import JSON
import Lifecycle
import Ring
import ServerConfig
import Threads
import SpoolModel
import TLS
import Web
#if canImport(Glibc)
import Glibc
#endif

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List, show, cancel or retry jobs.",
        subcommands: [List.self, Show.self, Cancel.self, Retry.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs (newest first).")
        @Option(help: "Only jobs in this state.") var state: String?
        @Option(help: "How many.") var limit: Int = 20
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            var q = "?limit=\(max(1, min(100, limit)))"
            if let state { q += "&state=\(state)" }
            let query = q
            let text = try await onLoop(server) { api async throws -> String in
                let doc = try await api.call("GET", "/jobs" + query)
                var lines = ["ID                              STATE        PROGRESS  TENANT     UPDATED"]
                for j in doc.root["data"]!.elements {
                    let id = (try? j["id"]?.string()) ?? "", st = (try? j["state"]?.string()) ?? ""
                    let p = (try? j["progress"]?.double()) ?? 0
                    let tenant = (try? j["tenant"]?.string()) ?? "", updated = (try? j["updated_at"]?.string()) ?? ""
                    lines.append("\(id.padding(32)) \(st.padding(12)) \(NumberFormat.fixed(p, places: 1).padding(8))  \(tenant.padding(10)) \(updated)")
                }
                lines.append("(\((try? doc.root["total_count"]?.int()) ?? 0) in all)")
                return lines.joined(separator: "\n")
            }
            print(text)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one job as JSON.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            let id = self.id
            print(try await onLoop(server) { api async throws -> String in
                try await api.call("GET", "/jobs/\(id)").root.rawText
            })
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a job.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            let id = self.id
            print(try await onLoop(server) { api async throws -> String in
                let doc = try await api.call("POST", "/jobs/\(id)/cancel")
                return "job \(id): \((try? doc.root["state"]?.string()) ?? "?")"
            })
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Retry a failed job.")
        @Argument(help: "The job id.") var id: String
        @OptionGroup var target: ServerOptions
        func run() async throws {
            let server = try target.resolve()
            let id = self.id
            print(try await onLoop(server) { api async throws -> String in
                let doc = try await api.call("POST", "/jobs/\(id)/retry",
                                                                                      headers: [("Idempotency-Key", "retry-" + Hex.random(bytes: 16))])
                return "job \(id): \((try? doc.root["state"]?.string()) ?? "?")"
            })
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
