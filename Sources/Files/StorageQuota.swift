// Files.StorageQuota: the total-quota ledger. Bytes of committed files plus bytes reserved
// by uploads in flight must stay within the quota: an upload with a Content-Length reserves
// it all before reading, a chunked one reserves as its bytes arrive, so two uploads racing
// for the last free bytes cannot both pass. A reservation becomes committed bytes when its
// file is committed and is released when the upload fails.
import SpoolModel
import Storage
import Synchronization

final class StorageQuota: Sendable {
    private struct Ledger {
        var committed: Int64
        var reserved: Int64
    }
    private let ledger: Mutex<Ledger>

    init(committed: Int64) { ledger = Mutex(Ledger(committed: committed, reserved: 0)) }

    var committed: Int64 { ledger.withLock { $0.committed } }
    var reserved: Int64 { ledger.withLock { $0.reserved } }

    /// Reserves `bytes` more unless that would cross `quota` (then 507, nothing reserved).
    func reserve(_ bytes: Int64, quota: Int64) throws(ModelError) {
        guard bytes > 0 else { return }
        let ok = ledger.withLock { l in
            guard l.committed + l.reserved + bytes <= quota else { return false }
            l.reserved += bytes
            return true
        }
        if !ok {
            throw ModelError(.insufficientStorage, "the storage quota of \(quota) bytes is used up (\(committed) bytes stored, \(reserved) bytes being uploaded)")
        }
    }

    /// An upload holding `reserved` bytes ends: `stored` bytes (its file's size) are kept,
    /// or none when it failed.
    func settle(reserved: Int64, stored: Int64) {
        ledger.withLock { l in
            l.reserved -= reserved
            l.committed += stored
        }
    }

    /// The committed total as the database has it now (other dispatchers' files included).
    func resync(committed: Int64) {
        ledger.withLock { $0.committed = committed }
    }

    func released(_ bytes: Int64) {
        ledger.withLock { $0.committed -= bytes }
    }
}

/// Wraps an upload's source: counts its bytes, refuses the byte that crosses the per-file
/// limit (413) and reserves quota for each piece before it goes on (507).
final class QuotaGate<Source: AsyncByteSource>: AsyncByteSource {
    let inner: Source
    let quota: StorageQuota
    let settings: FileSettings
    private(set) var bytes: Int64 = 0
    private(set) var reserved: Int64

    init(_ inner: Source, quota: StorageQuota, settings: FileSettings, reserved: Int64) {
        self.inner = inner
        self.quota = quota
        self.settings = settings
        self.reserved = reserved
    }

    func read(_ consume: (UnsafeRawBufferPointer) throws -> Void) async throws -> Bool {
        try await inner.read { raw in
            let total = bytes + Int64(raw.count)
            if total > settings.maxFileBytes {
                throw ModelError(.payloadTooLarge, "the file is larger than the limit of \(settings.maxFileBytes) bytes")
            }
            if total > reserved {
                try quota.reserve(total - reserved, quota: settings.totalQuotaBytes)
                reserved = total
            }
            bytes = total
            try consume(raw)
        }
    }
}
