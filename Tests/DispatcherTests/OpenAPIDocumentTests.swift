// OpenAPIDocumentTests: the served OpenAPI document parses with Spool's strict JSON parser,
// describes exactly the routes the router has (every route documented, nothing documented
// that does not exist), resolves every $ref, and is served without credentials.
import Glibc
import JSON
import ServerConfig
import SpoolModel
import SpoolTestSupport
import Web
import XCTest
@testable import Dispatcher

final class OpenAPIDocumentTests: XCTestCase {
    private var directory = ""

    override func setUp() {
        directory = "/tmp/spool-openapi-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
    }

    override func tearDown() {
        _ = try? runProcess("/bin/rm", ["-rf", directory])
    }

    private func makeRouter() async throws -> Router {
        let server = try await DispatchServer.open(dataDirectory: directory, settings: LiveSettings(ServerSettings()))
        return server.makeRouter()
    }

    /// (METHOD, /path/{param}) of every operation in the document; HEAD operations apart.
    private func documentedOperations(_ doc: JSONDocument) throws -> (operations: Set<String>, heads: Set<String>) {
        var operations: Set<String> = [], heads: Set<String> = []
        let paths = try XCTUnwrap(doc.root["paths"])
        XCTAssertEqual(paths.kind, .object)
        for (path, item) in paths.members {
            for (method, _) in item.members where method != "parameters" {
                XCTAssertTrue(["get", "post", "put", "delete", "head"].contains(method), "\(path): unexpected key \(method)")
                if method == "head" { heads.insert(path) } else { operations.insert(method.uppercased() + " " + path) }
            }
        }
        return (operations, heads)
    }

    func testEveryRouteIsDocumentedAndNothingElse() async throws {
        let doc = try JSONDocument(parsing: OpenAPIDocument.json)
        XCTAssertEqual(try doc.root["openapi"]?.string(), "3.1.0")
        let router = try await makeRouter()
        // The router's `:name` parameters are OpenAPI's `{name}`.
        let routed = Set(router.routeTable.map { route in
            route.method + " " + route.path.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }
                .reduce("") { $0 + "/" + $1 }
        })
        let (documented, heads) = try documentedOperations(doc)
        XCTAssertEqual(routed.subtracting(documented).sorted(), [], "routes the document does not describe")
        XCTAssertEqual(documented.subtracting(routed).sorted(), [], "documented operations no route serves")
        for path in heads { XCTAssertTrue(routed.contains("GET " + path), "HEAD \(path) documented without a GET route") }
        XCTAssertGreaterThanOrEqual(routed.count, 20)
    }

    func testEveryReferenceResolvesAndEveryErrorIsTheEnvelope() throws {
        let doc = try JSONDocument(parsing: OpenAPIDocument.json)
        var refs: [String] = []
        func walk(_ v: JSONValue) throws {
            switch v.kind {
            case .object:
                for (k, m) in v.members {
                    if k == "$ref" { refs.append(try m.string()) } else { try walk(m) }
                }
            case .array: for e in v.elements { try walk(e) }
            default: break
            }
        }
        try walk(doc.root)
        XCTAssertGreaterThan(refs.count, 50)
        for ref in refs {
            XCTAssertTrue(ref.hasPrefix("#/"), ref)
            var node: JSONValue? = doc.root
            for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
            XCTAssertNotNil(node, "unresolved \(ref)")
        }
        // Every 4xx/5xx answer with a body is the standard error.
        for (path, item) in try XCTUnwrap(doc.root["paths"]).members {
            for (method, op) in item.members where method != "parameters" && method != "head" {
                for (status, response) in try XCTUnwrap(op["responses"], "\(method) \(path)").members
                where status.hasPrefix("4") || status.hasPrefix("5") {
                    let ref = try response["$ref"]?.string()
                    XCTAssertTrue(ref == "#/components/responses/Error" || (path == "/api/v1/ready" && status == "503"),
                                  "\(method) \(path) \(status) is not the error envelope")
                }
            }
        }
        // Request bodies are closed, so unknown fields are generated as invalid input.
        for name in ["JobRequest", "KeyRequest", "Output", "CustomSpec"] {
            let schema = try XCTUnwrap(doc.root["components"]?["schemas"]?[name], name)
            XCTAssertEqual(try schema["additionalProperties"]?.bool(), false, name)
        }
        // The preset names are the model's: a job takes any, one of its outputs a transcode preset only.
        let transcodes = TranscodePreset.all.map(\.name)
        for (schema, names) in [("JobRequest", transcodes + LadderPreset.all.map(\.name)), ("Output", transcodes)] {
            let e = try XCTUnwrap(doc.root["components"]?["schemas"]?[schema]?["properties"]?["preset"]?["enum"], schema)
            XCTAssertEqual(try e.elements.map { try $0.string() }, names, schema)
        }
        let limit = try XCTUnwrap(doc.root["components"]?["parameters"]?["Limit"]?["schema"])
        XCTAssertEqual(try limit["minimum"]?.int(), 1)
        XCTAssertEqual(try limit["maximum"]?.int(), PageRequest.maxLimit)
    }

    func testServedWithoutCredentials() async throws {
        let router = try await makeRouter()
        let response = await router.respond(to: Request(method: "GET", target: "/api/v1/openapi.json"))
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("Content-Type"), "application/json")
        XCTAssertEqual(response.body, Array(OpenAPIDocument.json.utf8))
    }
}
