// Gateway.CertificateSteps: the openssl commands that make the gateway's private certificate
// authority (once: clients pin ca.pem, so it is kept across restarts) and a server
// certificate signed by it for the listen host and the configured names (made again when
// those names change). ECDSA P-256 keys; the CA is valid ten years, the server certificate
// 825 days (what browsers and most TLS stacks still accept for a leaf).

public struct CertificateStep: Sendable, Equatable {
    /// What the step makes, for messages ("the CA key").
    public let what: String
    /// argv for openssl (argv[0] is "openssl").
    public let arguments: [String]
}

public enum CertificateSteps {
    /// The subjectAltName/extension file the server certificate is signed with. Written
    /// beside it; when what is on disk differs, the names changed and the certificate is
    /// made again.
    public static func serverExtensions(_ plan: GatewayPlan) -> String {
        var names: [String] = []
        for n in [plan.listen.host] + plan.certificateNames where !names.contains(n) { names.append(n) }
        let alt = names.map { name in
            (try? HostPort(name + ":1", setting: "name"))?.isIPv4 == true ? "IP:\(name)" : "DNS:\(name)"
        }
        return """
        basicConstraints = critical, CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectKeyIdentifier = hash
        authorityKeyIdentifier = keyid, issuer
        subjectAltName = \(alt.joined(separator: ", "))

        """
    }

    /// The steps for a new CA (key and self-signed certificate).
    public static func authority(_ paths: GatewayPaths) -> [CertificateStep] {
        [
            CertificateStep(what: "the CA key", arguments: [
                "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", paths.caKey,
            ]),
            CertificateStep(what: "the CA certificate", arguments: [
                "openssl", "req", "-x509", "-new", "-key", paths.caKey, "-sha256", "-days", "3650",
                "-subj", "/CN=Spool gateway CA",
                "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", paths.caCertificate,
            ]),
        ]
    }

    /// The steps for a new server key and certificate signed by the CA, with `serial` (hex,
    /// random: a reissued certificate must not repeat a serial).
    public static func server(_ paths: GatewayPaths, serial: String) -> [CertificateStep] {
        [
            CertificateStep(what: "the server key", arguments: [
                "openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", paths.serverKey,
            ]),
            CertificateStep(what: "the server certificate request", arguments: [
                "openssl", "req", "-new", "-key", paths.serverKey, "-subj", "/CN=spool-gateway", "-out", paths.serverRequest,
            ]),
            CertificateStep(what: "the server certificate", arguments: [
                "openssl", "x509", "-req", "-in", paths.serverRequest, "-CA", paths.caCertificate, "-CAkey", paths.caKey,
                "-set_serial", "0x" + serial, "-days", "825", "-sha256", "-extfile", paths.serverExtensions,
                "-out", paths.serverCertificate,
            ]),
        ]
    }

    /// 16 random bytes in hex, the first below 0x80 (a positive serial).
    public static func randomSerial<R: RandomNumberGenerator>(using rng: inout R) -> String {
        let digits = Array("0123456789abcdef")
        var out = ""
        for i in 0..<16 {
            var b = UInt8.random(in: 0...255, using: &rng)
            if i == 0 { b &= 0x7f; b |= 0x10 }
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return out
    }
}
