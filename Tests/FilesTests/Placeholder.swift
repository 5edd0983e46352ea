import XCTest
@testable import Files
final class PlaceholderTests: XCTestCase { func testModuleLinks() { XCTAssertNotNil(FilesModule.self) } }
