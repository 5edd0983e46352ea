// URingProbe: the one io_uring capability check. The backend runs it on the ring it is
// about to use (and refuses to start when it fails); `spool kernel-check` runs the same
// check on a small ring and reports it. Both decide from these facts, never from prose.
internal import CURing

struct URingProbe {
    /// Setup flags Spool asks for (each dropped by the kernel if unsupported).
    static let wantedSetupFlags = UInt32(CURING_SETUP_COOP_TASKRUN | CURING_SETUP_SINGLE_ISSUER | CURING_SETUP_DEFER_TASKRUN | CURING_SETUP_SUBMIT_ALL)

    /// The setup flags with their names and the kernels that brought them.
    static let setupFlagNames: [(bit: UInt32, name: String, since: String)] = [
        (UInt32(CURING_SETUP_COOP_TASKRUN), "COOP_TASKRUN", "5.19"),
        (UInt32(CURING_SETUP_SINGLE_ISSUER), "SINGLE_ISSUER", "6.0"),
        (UInt32(CURING_SETUP_DEFER_TASKRUN), "DEFER_TASKRUN", "6.1"),
        (UInt32(CURING_SETUP_SUBMIT_ALL), "SUBMIT_ALL", "5.18"),
    ]

    struct Opcode {
        var name: String
        var minimumKernel: String
        var optional: Bool
        /// nil when the kernel cannot be probed (IORING_REGISTER_PROBE is 5.6+).
        var supported: Bool?
    }

    /// Every opcode Spool uses, as this ring supports them.
    var opcodes: [Opcode]

    /// The first required opcode the kernel lacks, if any.
    var missingRequired: Opcode? { opcodes.first { !$0.optional && $0.supported == false } }

    func supports(_ op: curing_opcode) -> Bool { opcodes[Int(op.rawValue)].supported == true }

    /// Probes `ring` (opaque `curing_ring *`).
    init(ring: OpaquePointer) {
        let count = Int(CURING_OP_COUNT_.rawValue)
        var supported = [UInt8](repeating: 0, count: count)
        let probed = unsafe curing_probe(ring, &supported) == 0
        opcodes = (0..<count).map { op in
            unsafe Opcode(name: String(cString: curing_opcode_name(Int32(op))),
                   minimumKernel: String(cString: curing_opcode_min_kernel(Int32(op))),
                   optional: curing_opcode_optional(Int32(op)) != 0,
                   supported: probed ? supported[op] == 1 : nil)
        }
    }

    /// Registers a small provided-buffer ring on `ring`: 0, or the negative errno (5.19+).
    static func providedBufferRing(_ ring: OpaquePointer, entries: UInt32) -> Int32 {
        unsafe curing_buf_ring_setup(ring, entries, 0)
    }
}
