// SpoolModel.ModelError: the error codes every layer shares, so the API, the CLI and the
// engines word a refusal the same way. `code` is the stable machine-readable string of
// the API's error envelope; `status` the HTTP status the API answers it with.
public struct ModelError: Error, Equatable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public let status: Int
        private init(_ rawValue: String, _ status: Int) { self.rawValue = rawValue; self.status = status }
        public var description: String { rawValue }

        public static let invalidJSON = Code("invalid_json", 400)
        public static let badRequest = Code("bad_request", 400)
        public static let unauthorized = Code("unauthorized", 401)
        public static let forbidden = Code("forbidden", 403)
        public static let notFound = Code("not_found", 404)
        public static let conflict = Code("conflict", 409)
        public static let invalidTransition = Code("invalid_transition", 409)
        /// A lease epoch older than the job's: the engine lost the job to another.
        public static let staleLease = Code("stale_lease", 409)
        public static let payloadTooLarge = Code("payload_too_large", 413)
        public static let validationFailed = Code("validation_failed", 422)
        public static let idempotencyKeyReused = Code("idempotency_key_reused", 422)
        public static let rateLimited = Code("rate_limited", 429)
        public static let insufficientStorage = Code("insufficient_storage", 507)
        public static let unavailable = Code("unavailable", 503)
        /// The server cannot do this here (a direct upload to a store that takes none).
        public static let notImplemented = Code("not_implemented", 501)
        public static let `internal` = Code("internal", 500)

        /// Every code, for documentation and the OpenAPI document.
        public static let all: [Code] = [invalidJSON, badRequest, unauthorized, forbidden, notFound, conflict,
                                         invalidTransition, staleLease, payloadTooLarge, validationFailed,
                                         idempotencyKeyReused, rateLimited, insufficientStorage, unavailable, notImplemented, `internal`]
    }

    public var code: Code
    public var message: String
    /// Field (JSON Pointer or name) → what is wrong with it, in a stable order.
    public var details: [(String, String)]

    public init(_ code: Code, _ message: String, details: [(String, String)] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    public init(_ code: Code, _ message: String, details: KeyValuePairs<String, String>) {
        self.init(code, message, details: details.map { ($0.key, $0.value) })
    }

    /// A field that fails validation (422, the field named in `details`).
    public static func invalidField(_ pointer: String, _ problem: String) -> ModelError {
        ModelError(.validationFailed, "\(pointer.isEmpty ? "/" : pointer): \(problem)", details: [(pointer, problem)])
    }

    /// A transcode setting that is out of range or unknown (422, the setting named in
    /// `details`); `message` is the whole readable reason.
    public static func invalidSetting(_ setting: String, _ reason: String) -> ModelError {
        ModelError(.validationFailed, reason, details: [(setting, reason)])
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func == (a: ModelError, b: ModelError) -> Bool {
        a.code == b.code && a.message == b.message && a.details.elementsEqual(b.details, by: { $0 == $1 })
    }
}
