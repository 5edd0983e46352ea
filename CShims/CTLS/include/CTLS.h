// CTLS: the only door to OpenSSL's libssl (Debian's libssl-dev), for the HTTP client's
// TLS. A session is a state machine over two memory buffers, never a socket: the caller
// feeds it what the network delivered and sends what it has to send, so the event loop
// keeps every byte of I/O. The types are opaque; nothing of OpenSSL leaks into Swift.
#ifndef SPOOL_CTLS_H
#define SPOOL_CTLS_H
#include <stddef.h>

typedef struct spool_tls_ctx spool_tls_ctx;
typedef struct spool_tls spool_tls;

/// Return values of the session calls below.
enum {
    SPOOL_TLS_OK = 1,
    SPOOL_TLS_WANT_READ = 0,    // needs more bytes from the peer (feed, then call again)
    SPOOL_TLS_ERROR = -1,       // failed for good; spool_tls_error says why
    SPOOL_TLS_CLOSED = -2,      // the peer sent close_notify
};

/// A client context: peers verified against `ca_file` (PEM) when given, else the system's
/// trust store; TLS 1.2 at least. NULL with a reason in `err` on failure.
spool_tls_ctx *spool_tls_ctx_new(const char *ca_file, char *err, size_t err_len);
void spool_tls_ctx_free(spool_tls_ctx *ctx);

/// A client session for `host`: SNI and the certificate's DNS name when `host` is a name,
/// its IP address SAN when `host_is_ip`. NULL with a reason in `err` on failure.
spool_tls *spool_tls_new(spool_tls_ctx *ctx, const char *host, int host_is_ip, char *err, size_t err_len);
void spool_tls_free(spool_tls *s);

/// One handshake step: OK when done, WANT_READ, or ERROR.
int spool_tls_handshake(spool_tls *s);
/// Bytes received from the peer, for the session to read (always takes them all).
int spool_tls_feed(spool_tls *s, const void *bytes, size_t len);
/// Bytes the session has for the peer.
size_t spool_tls_pending_output(const spool_tls *s);
/// Moves up to `cap` of them into `out`; returns how many.
size_t spool_tls_take_output(spool_tls *s, void *out, size_t cap);
/// Encrypts all of `len` bytes (their records wait in the output): OK or ERROR.
int spool_tls_write(spool_tls *s, const void *bytes, size_t len);
/// Decrypts into `out`: the byte count (> 0), or WANT_READ, CLOSED or ERROR.
long spool_tls_read(spool_tls *s, void *out, size_t cap);
/// Queues close_notify in the output.
void spool_tls_shutdown(spool_tls *s);
/// Why the last call failed (valid until the next call on the session).
const char *spool_tls_error(const spool_tls *s);
/// The negotiated protocol ("TLSv1.3"), for logs and tests.
const char *spool_tls_version(const spool_tls *s);

#endif
