// CTLS: OpenSSL client sessions over memory BIOs (see include/CTLS.h).
#include "CTLS.h"
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct spool_tls_ctx { SSL_CTX *ctx; };

struct spool_tls {
    SSL *ssl;
    BIO *in;   // what the peer sent, for OpenSSL to read
    BIO *out;  // what OpenSSL wrote, for the peer
    char error[256];
};

// The oldest queued OpenSSL error as text, else `fallback`; clears the queue.
static void take_error(char *buf, size_t len, const char *fallback) {
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char text[200];
        ERR_error_string_n(e, text, sizeof text);
        snprintf(buf, len, "%s", text);
    } else {
        snprintf(buf, len, "%s", fallback);
    }
    ERR_clear_error();
}

spool_tls_ctx *spool_tls_ctx_new(const char *ca_file, char *err, size_t err_len) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { take_error(err, err_len, "cannot create a TLS context"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        take_error(err, err_len, "cannot load the trusted certificates");
        SSL_CTX_free(ctx);
        return NULL;
    }
    spool_tls_ctx *c = malloc(sizeof *c);
    if (!c) { snprintf(err, err_len, "out of memory"); SSL_CTX_free(ctx); return NULL; }
    c->ctx = ctx;
    return c;
}

void spool_tls_ctx_free(spool_tls_ctx *c) {
    if (!c) return;
    SSL_CTX_free(c->ctx);
    free(c);
}

spool_tls *spool_tls_new(spool_tls_ctx *c, const char *host, int host_is_ip, char *err, size_t err_len) {
    ERR_clear_error();
    spool_tls *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, err_len, "out of memory"); return NULL; }
    s->ssl = SSL_new(c->ctx);
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->in || !s->out) {
        take_error(err, err_len, "cannot create a TLS session");
        if (s->ssl) SSL_free(s->ssl);
        BIO_free(s->in);
        BIO_free(s->out);
        free(s);
        return NULL;
    }
    // An empty memory BIO reports "retry" rather than end of stream.
    BIO_set_mem_eof_return(s->in, -1);
    SSL_set_bio(s->ssl, s->in, s->out);   // the session owns both BIOs now
    int ok;
    if (host_is_ip) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), host);
    } else {
        SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(s->ssl, host) == 1 && SSL_set_tlsext_host_name(s->ssl, host) == 1;
    }
    if (ok != 1) {
        take_error(err, err_len, "cannot set the name to verify");
        SSL_free(s->ssl);
        free(s);
        return NULL;
    }
    SSL_set_connect_state(s->ssl);
    return s;
}

void spool_tls_free(spool_tls *s) {
    if (!s) return;
    SSL_free(s->ssl);
    free(s);
}

// Classifies a failed SSL call's result.
static int outcome(spool_tls *s, int rc, const char *what) {
    int e = SSL_get_error(s->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) { ERR_clear_error(); return SPOOL_TLS_WANT_READ; }
    if (e == SSL_ERROR_ZERO_RETURN) { ERR_clear_error(); return SPOOL_TLS_CLOSED; }
    long verify = SSL_get_verify_result(s->ssl);
    if (verify != X509_V_OK) {
        snprintf(s->error, sizeof s->error, "the server's certificate is not trusted: %s",
                 X509_verify_cert_error_string(verify));
        ERR_clear_error();
    } else {
        char text[200];
        take_error(text, sizeof text, what);
        snprintf(s->error, sizeof s->error, "%s", text);
    }
    return SPOOL_TLS_ERROR;
}

int spool_tls_handshake(spool_tls *s) {
    ERR_clear_error();
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) return SPOOL_TLS_OK;
    int o = outcome(s, rc, "the TLS handshake failed");
    if (o == SPOOL_TLS_CLOSED) {
        snprintf(s->error, sizeof s->error, "the server closed the TLS session during the handshake");
        return SPOOL_TLS_ERROR;
    }
    return o;
}

int spool_tls_feed(spool_tls *s, const void *bytes, size_t len) {
    while (len > 0) {
        size_t step = len > 0x40000000 ? 0x40000000 : len;
        int n = BIO_write(s->in, bytes, (int)step);
        if (n <= 0) { snprintf(s->error, sizeof s->error, "out of memory for received TLS data"); return SPOOL_TLS_ERROR; }
        bytes = (const char *)bytes + n;
        len -= (size_t)n;
    }
    return SPOOL_TLS_OK;
}

size_t spool_tls_pending_output(const spool_tls *s) { return BIO_ctrl_pending(s->out); }

size_t spool_tls_take_output(spool_tls *s, void *out, size_t cap) {
    size_t n = 0;
    if (cap == 0 || BIO_read_ex(s->out, out, cap, &n) != 1) return 0;
    return n;
}

int spool_tls_write(spool_tls *s, const void *bytes, size_t len) {
    ERR_clear_error();
    while (len > 0) {
        size_t n = 0;
        int rc = SSL_write_ex(s->ssl, bytes, len, &n);
        if (rc != 1) {
            int o = outcome(s, rc, "TLS write failed");
            // A memory BIO never fills, so a write cannot wait on the peer.
            if (o == SPOOL_TLS_WANT_READ) snprintf(s->error, sizeof s->error, "TLS write wants a renegotiation, which is not supported");
            if (o == SPOOL_TLS_CLOSED) snprintf(s->error, sizeof s->error, "the peer closed the TLS session");
            return SPOOL_TLS_ERROR;
        }
        bytes = (const char *)bytes + n;
        len -= n;
    }
    return SPOOL_TLS_OK;
}

long spool_tls_read(spool_tls *s, void *out, size_t cap) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(s->ssl, out, cap, &n);
    if (rc == 1) return (long)n;
    return outcome(s, rc, "TLS read failed");
}

void spool_tls_shutdown(spool_tls *s) {
    ERR_clear_error();
    (void)SSL_shutdown(s->ssl);
    ERR_clear_error();
}

const char *spool_tls_error(const spool_tls *s) { return s->error; }

const char *spool_tls_version(const spool_tls *s) { return SSL_get_version(s->ssl); }
