// Dispatcher.DispatchServer+Storage: where file contents live. storage.backend = local
// keeps them under the data directory; s3 puts them in an S3-compatible bucket
// (storage.s3_*), where downloads become presigned URLs: clients get a 302 to one from
// GET /files/{id}, engines a 307 for their input, so bytes never pass through the
// dispatcher on the way out and no one but the dispatcher holds the store's secret.
import Logging
import S3
import ServerConfig
import SpoolAPI
import SpoolModel
import Storage
import Threads

extension DispatchServer {
    static func openStorage(_ settings: ServerSettings.Storage, dataDirectory: String, shared: Bool, clock: any WallClock,
                            logger: Logger) async throws -> any StorageProvider {
        guard settings.backend == "s3" else {
            return try await LocalStorage.open(root: dataDirectory + "/files", removeLeftovers: !shared)
        }
        let endpoint: S3Endpoint
        do {
            endpoint = try S3Endpoint(url: settings.s3Endpoint, bucket: settings.s3Bucket, region: settings.s3Region,
                                      credentials: S3Credentials(accessKeyID: settings.s3AccessKeyID, secretAccessKey: settings.s3SecretAccessKey))
        } catch {
            throw ConfigError(["storage.s3_endpoint / storage.s3_bucket: \(error.message)"])
        }
        var config = S3StorageConfiguration(endpoint: endpoint)
        config.prefix = settings.s3Prefix
        config.partSize = settings.s3PartMiB << 20
        config.partsInFlight = settings.s3PartsInFlight
        config.presignSeconds = Int(settings.presignSeconds)
        // Signatures and URL expiry on the dispatcher's clock (the one its records use).
        config.now = { clock.unixMilliseconds / 1000 }
        let storage = try await S3Storage.open(config)
        logger.info("files in S3: bucket \(settings.s3Bucket) at \(settings.s3Endpoint)\(settings.s3Prefix.isEmpty ? "" : ", prefix \(settings.s3Prefix)")")
        return storage
    }

    /// The URL a job result gives for the output file `id`: the CDN's (signed when
    /// storage.cdn_secret is set) with S3 and storage.cdn_base_url, else the API's.
    static func outputURL(_ id: FileID, storage: ServerSettings.Storage, unixSeconds: Int64) -> String {
        guard storage.backend == "s3", !storage.cdnBaseURL.isEmpty,
              let links = CDNLinks(base: storage.cdnBaseURL, secret: storage.cdnSecret, lifetimeSeconds: storage.cdnURLSeconds) else {
            return "/api/\(SpoolAPI.version)/files/\(id.text)"
        }
        return links.url(objectKey: storage.s3Prefix + id.text, unixSeconds: unixSeconds)
    }

    /// Stops what the storage runs of its own (the S3 client's loop).
    public func closeStorage() async {
        if let s3 = files.storage as? S3Storage { await s3.shutdown() }
    }
}
