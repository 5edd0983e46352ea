import XCTest
@testable import ServerConfig
final class PlaceholderTests: XCTestCase { func testDefaults() { XCTAssertEqual(ServerSettings().jobs.maxAttempts, 3) } }
