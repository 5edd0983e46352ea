import XCTest
@testable import Jobs
final class PlaceholderTests: XCTestCase { func testModuleLinks() { XCTAssertNotNil(JobsModule.self) } }
