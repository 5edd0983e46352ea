// GatewayTests: the gateway's settings are refused with the setting named; the rendered
// nginx.conf carries the rules the gateway promises (TLS 1.3 only, a key required outside
// health, per-key and per-address limits, POST retried only with an Idempotency-Key,
// streaming for files and events, standard error JSON for what nginx answers itself); the
// openssl steps make a CA and a server certificate that `openssl verify` accepts for the
// right names; and the real nginx accepts the rendered configuration (`nginx -t`).
// Behaviour through a running nginx is checked from outside: Tests/External/gateway_e2e.py.
import Foundation
@testable import Gateway
import JSON
import Sandbox
import XCTest

final class GatewayTests: XCTestCase {
    func plan(_ dir: String = "/tmp/spool-gw") throws -> GatewayPlan {
        GatewayPlan(listen: try HostPort("127.0.0.1:8443", setting: "listen"),
                    upstreams: [try HostPort("127.0.0.1:8080", setting: "upstream"), try HostPort("127.0.0.1:8081", setting: "upstream")],
                    directory: dir)
    }

    func refusal(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "(accepted)"
        } catch {
            return "\(error)"
        }
    }

    func testAddressesAreHostAndPortAndNothingNginxWouldReadAsSyntax() throws {
        let a = try HostPort("10.1.2.3:80", setting: "listen")
        XCTAssertEqual(a.host, "10.1.2.3")
        XCTAssertEqual(a.port, 80)
        XCTAssertTrue(a.isIPv4)
        XCTAssertFalse(a.isLoopback)
        XCTAssertTrue(try HostPort("127.0.0.2:1", setting: "x").isLoopback)
        XCTAssertTrue(try HostPort("localhost:65535", setting: "x").isLoopback)
        XCTAssertFalse(try HostPort("dispatch-1.internal:8080", setting: "x").isIPv4)
        for bad in ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80a", ":80", "a b:80", "x;y:80", "h}:80", "-h:80", "h:+80"] {
            XCTAssertTrue(refusal { _ = try HostPort(bad, setting: "upstream") }.hasPrefix("upstream: "), bad)
        }
    }

    func testPlansAreRefusedNamingTheSetting() throws {
        var p = try plan()
        XCTAssertEqual(refusal { try p.validate() }, "(accepted)")
        p.upstreams = []
        XCTAssertTrue(refusal { try p.validate() }.hasPrefix("upstream:"))
        p = try plan()
        p.upstreams.append(p.upstreams[0])
        XCTAssertTrue(refusal { try p.validate() }.contains("named twice"))
        p = try plan()
        p.engineListen = p.listen
        XCTAssertTrue(refusal { try p.validate() }.hasPrefix("engine-listen:"))
        for dir in ["relative/dir", "/tmp/a b", "/tmp/a;b", "/tmp/${x}", ""] {
            p = try plan(dir)
            XCTAssertTrue(refusal { try p.validate() }.hasPrefix("data-dir:"), dir)
        }
        p = try plan()
        p.ratePerKey = 0
        XCTAssertTrue(refusal { try p.validate() }.hasPrefix("rate-per-key: 0"))
        p = try plan()
        p.keepAliveSeconds = 60
        XCTAssertTrue(refusal { try p.validate() }.hasPrefix("keepalive-seconds"))
        p = try plan()
        p.workers = "many"
        XCTAssertTrue(refusal { try p.validate() }.hasPrefix("workers:"))
        p = try plan()
        p.certificateNames = ["ok.example", "bad name"]
        XCTAssertTrue(refusal { try p.validate() }.contains("bad name"))
    }

    func testTheConfigurationCarriesEveryRule() throws {
        var p = try plan()
        p.ratePerKey = 7
        p.burstPerKey = 9
        p.engineListen = try HostPort("127.0.0.1:8090", setting: "engine-listen")
        let conf = try NginxConfig.render(p)
        XCTAssertTrue(conf.contains("listen 127.0.0.1:8443 ssl;"))
        XCTAssertTrue(conf.contains("ssl_protocols TLSv1.3;"))
        XCTAssertFalse(conf.contains("TLSv1.2"))
        XCTAssertTrue(conf.contains("server 127.0.0.1:8080 max_fails=2 fail_timeout=5s;"))
        XCTAssertTrue(conf.contains("server 127.0.0.1:8081 max_fails=2 fail_timeout=5s;"))
        XCTAssertTrue(conf.contains("rate=7r/s"))
        XCTAssertTrue(conf.contains("limit_req zone=spool_key burst=9 nodelay;"))
        XCTAssertTrue(conf.contains("keepalive_timeout 30s;"))
        // Every location that proxies API calls other than health requires a key first.
        let blocks = conf.components(separatedBy: "location ").dropFirst()
        for block in blocks where block.contains("proxy_pass") {
            let head = String(block.prefix(while: { $0 != "{" }))
            let open = head.contains("health|ready|version")
            XCTAssertEqual(block.contains(#"if ($spool_key = "") { return 401; }"#), !open && !head.hasPrefix("@"), head)
            XCTAssertTrue(block.contains("limit_req zone=spool_address"), head)
        }
        // Non-idempotent retries only in the replayable location, which only POSTs to
        // /jobs or /jobs/ID/retry with a key reach.
        XCTAssertEqual(conf.components(separatedBy: "non_idempotent").count - 1, 1)
        XCTAssertTrue(conf.contains(#""~^POST /api/v1/jobs(/[^/ ]+/retry)? ." 1;"#))
        // The replayable location is reached through error_page 418, so its own errors need
        // recursive error pages where the 418 is taken.
        let api = try XCTUnwrap(conf.components(separatedBy: "location /api/v1/ {").last?.components(separatedBy: "proxy_pass").first)
        XCTAssertTrue(api.contains("recursive_error_pages on;"))
        let files = try XCTUnwrap(conf.components(separatedBy: "location /api/v1/files {").last?.components(separatedBy: "proxy_pass").first)
        for rule in ["client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;"] { XCTAssertTrue(files.contains(rule), rule) }
        let events = try XCTUnwrap(conf.components(separatedBy: "events$ {").last?.components(separatedBy: "proxy_pass").first)
        XCTAssertTrue(events.contains("proxy_buffering off;"))
        XCTAssertTrue(events.contains("proxy_read_timeout 3600s;"))
        // The engines' plain listener serves engine endpoints and health only.
        let engineServer = try XCTUnwrap(conf.components(separatedBy: "listen 127.0.0.1:8090;").last)
        XCTAssertTrue(engineServer.contains("location /api/v1/engines/ {"))
        XCTAssertFalse(engineServer.contains("location /api/v1/ {"))
        XCTAssertFalse(engineServer.contains("/api/v1/files"))
    }

    /// What nginx answers itself is the standard error envelope, valid JSON.
    func testErrorsMadeByNginxAreTheStandardEnvelope() throws {
        let conf = try NginxConfig.render(try plan())
        let returns = try Regex(#"return (\d{3}) '([^']*)';"#)
        var seen: Set<Int> = []
        for m in conf.matches(of: returns) {
            let status = Int(m.output[1].substring!)!
            let body = try JSONDocument(parsing: Array(String(m.output[2].substring!).utf8)).root
            let error = try XCTUnwrap(body["error"])
            XCTAssertFalse(try XCTUnwrap(error["code"]?.string()).isEmpty)
            XCTAssertFalse(try XCTUnwrap(error["message"]?.string()).isEmpty)
            XCTAssertNotNil(error["details"])
            seen.insert(status)
        }
        XCTAssertEqual(seen, [401, 403, 404, 405, 410, 413, 429, 502, 504])
        XCTAssertTrue(conf.contains("add_header Retry-After 1 always;"))
        XCTAssertTrue(conf.contains("add_header WWW-Authenticate"))
        // A location with an error_page of its own repeats every one (nginx does not merge).
        let apiBlock = try XCTUnwrap(conf.components(separatedBy: "location /api/v1/ {").last)
        for status in seen { XCTAssertTrue(apiBlock.contains("error_page \(status) = @spool_\(status);"), "\(status)") }
    }

    func testCertificatesVerifyAndNginxAcceptsTheConfiguration() throws {
        guard let openssl = locateProgram("openssl"), let nginx = locateProgram("nginx", extra: ["/usr/sbin"]) else {
            if ProcessInfo.processInfo.environment["SPOOL_REQUIRE_SERVICES"] == "1" { return XCTFail("openssl or nginx is not installed (make deps installs them)") }
            throw XCTSkip("openssl or nginx is not installed")
        }
        let dir = NSTemporaryDirectory() + "spool-gateway-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/temp", withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var p = try plan(dir)
        p.certificateNames = ["gateway.test", "10.9.8.7"]
        p.engineListen = try HostPort("127.0.0.1:8090", setting: "engine-listen")
        p.media = try MediaEdge(originURL: "http://127.0.0.1:9000/spool-media/files-", secret: "edge-secret-0123456789")
        let paths = p.paths
        let ext = CertificateSteps.serverExtensions(p)
        XCTAssertTrue(ext.contains("subjectAltName = IP:127.0.0.1, DNS:gateway.test, IP:10.9.8.7"), ext)
        try ext.write(toFile: paths.serverExtensions, atomically: true, encoding: .utf8)
        var rng = SystemRandomNumberGenerator()
        let serial = CertificateSteps.randomSerial(using: &rng)
        XCTAssertEqual(serial.count, 32)
        XCTAssertTrue(serial.first! >= "1" && serial.first! <= "7")
        for step in CertificateSteps.authority(paths) + CertificateSteps.server(paths, serial: serial) {
            let (status, output) = try run(openssl, step.arguments, dir: dir)
            XCTAssertEqual(status, .exited(0), "\(step.what): \(output)")
        }
        var (status, output) = try run(openssl, ["openssl", "verify", "-CAfile", paths.caCertificate, "-verify_hostname", "gateway.test", paths.serverCertificate], dir: dir)
        XCTAssertEqual(status, .exited(0), output)
        (status, output) = try run(openssl, ["openssl", "verify", "-CAfile", paths.caCertificate, "-verify_ip", "10.9.8.7", paths.serverCertificate], dir: dir)
        XCTAssertEqual(status, .exited(0), output)
        // A name the certificate was not made for is refused.
        (status, output) = try run(openssl, ["openssl", "verify", "-CAfile", paths.caCertificate, "-verify_hostname", "other.test", paths.serverCertificate], dir: dir)
        XCTAssertNotEqual(status, .exited(0), output)
        try NginxConfig.render(p).write(toFile: paths.configuration, atomically: true, encoding: .utf8)
        (status, output) = try run(nginx, ["nginx", "-t", "-p", dir, "-c", paths.configuration, "-e", paths.errorLog], dir: dir)
        XCTAssertEqual(status, .exited(0), output)
        // And nginx refuses a broken one (the check is real).
        try (NginxConfig.render(p) + "unknown_directive on;\n").write(toFile: paths.configuration, atomically: true, encoding: .utf8)
        (status, output) = try run(nginx, ["nginx", "-t", "-p", dir, "-c", paths.configuration, "-e", paths.errorLog], dir: dir)
        XCTAssertNotEqual(status, .exited(0), output)
    }

    /// The media edge: signed, cached by path, read-only, pointed at the bucket; refused
    /// settings name the setting.
    func testTheMediaEdgeIsSignedCachedAndReadOnly() throws {
        var p = try plan()
        XCTAssertFalse(try NginxConfig.render(p).contains("/media/"), "no media edge unless asked")
        p.media = try MediaEdge(originURL: "http://127.0.0.1:9000/spool-media/", secret: "edge-secret-0123456789")
        let conf = try NginxConfig.render(p)
        let block = try XCTUnwrap(conf.components(separatedBy: "location /media/ {").last?.components(separatedBy: "\n        }").first)
        for rule in ["secure_link $arg_md5,$arg_expires;", "secure_link_md5 \"$secure_link_expires$uri edge-secret-0123456789\";",
                     "if ($secure_link = \"\") { return 403; }", "if ($secure_link = \"0\") { return 410; }",
                     "if ($request_method !~ ^(GET|HEAD)$) { return 405; }", "proxy_cache spool_media;", "proxy_cache_key $uri;",
                     "proxy_set_header Authorization \"\";", "rewrite ^/media/(.*)$ /spool-media/$1? break;",
                     "add_header X-Cache-Status $upstream_cache_status always;"] {
            XCTAssertTrue(block.contains(rule), rule)
        }
        XCTAssertTrue(conf.contains("server 127.0.0.1:9000;"))
        p.media = try MediaEdge(originURL: "http://127.0.0.1:9000/spool-media", secret: nil)
        XCTAssertFalse(try NginxConfig.render(p).contains("secure_link"), "no secret, no signature check")
        XCTAssertTrue(refusal { _ = try MediaEdge(originURL: "https://s3.example.com/b", secret: nil) }.contains("media-origin"))
        XCTAssertTrue(refusal { _ = try MediaEdge(originURL: "http://127.0.0.1:9000", secret: nil) }.contains("no bucket"))
        p.media = try MediaEdge(originURL: "http://127.0.0.1:9000/b;evil", secret: nil)
        XCTAssertTrue(refusal { try p.validate() }.contains("media-origin"))
        p.media = try MediaEdge(originURL: "http://127.0.0.1:9000/bucket", secret: "short")
        XCTAssertTrue(refusal { try p.validate() }.contains("media-secret"))
    }

    /// Runs a helper with its output in a file; returns its status and output.
    func run(_ path: String, _ argv: [String], dir: String) throws -> (ExitStatus, String) {
        let log = dir + "/run-\(UInt32.random(in: 0...UInt32.max)).log"
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(fd); close(null) }
        let status = try ConfinedProcess.spawnHelper(path: path, argv: argv, environment: ["PATH=/usr/sbin:/usr/bin:/bin"], fds: [null, fd, fd]).wait()
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }
}
