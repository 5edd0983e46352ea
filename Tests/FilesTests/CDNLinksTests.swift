// Storage.CDNLinks: output URLs under a CDN base, signed as nginx's secure_link checks
// (the token below was computed independently with Python's hashlib and base64).
import Storage
import XCTest

final class CDNLinksTests: XCTestCase {
    func testSignedURLsCarryTheTokenNginxComputes() throws {
        let links = try XCTUnwrap(CDNLinks(base: "https://edge.example.com:8443/media/", secret: "edge-secret-0123456789", lifetimeSeconds: 1_000))
        XCTAssertEqual(links.basePath, "/media")
        XCTAssertEqual(links.url(objectKey: "spool-file_abc", unixSeconds: 1_699_999_000),
                       "https://edge.example.com:8443/media/spool-file_abc?md5=-t9k6DapHcw4-YA6vi7MXw&expires=1700000000")
        // Another key or another time signs differently.
        XCTAssertNotEqual(links.url(objectKey: "spool-file_abd", unixSeconds: 1_699_999_000).split(separator: "?")[1],
                          links.url(objectKey: "spool-file_abc", unixSeconds: 1_699_999_000).split(separator: "?")[1])
        XCTAssertTrue(links.url(objectKey: "k", unixSeconds: 5).hasSuffix("&expires=1005"))
    }

    func testUnsignedURLsAndRefusedBases() throws {
        let plain = try XCTUnwrap(CDNLinks(base: "http://cdn.example.com", secret: "", lifetimeSeconds: 60))
        XCTAssertEqual(plain.url(objectKey: "a/b", unixSeconds: 0), "http://cdn.example.com/a/b")
        XCTAssertEqual(plain.basePath, "")
        XCTAssertNil(CDNLinks(base: "ftp://cdn", secret: nil, lifetimeSeconds: 1))
        XCTAssertNil(CDNLinks(base: "https://", secret: nil, lifetimeSeconds: 1))
        XCTAssertNil(CDNLinks(base: "https://cdn/x?y=1", secret: nil, lifetimeSeconds: 1))
        XCTAssertTrue(CDNLinks.isValidSecret("abcdefghijklmnop"))
        XCTAssertFalse(CDNLinks.isValidSecret("short"))
        XCTAssertFalse(CDNLinks.isValidSecret("has space in it abc"))
    }
}
