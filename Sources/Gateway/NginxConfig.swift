// Gateway.NginxConfig: the nginx configuration of the gateway, rendered from a validated
// GatewayPlan. What it does, and why so:
// - TLS 1.3 only on the client listener; the dispatchers stay plain HTTP on loopback.
// - Only /api/v1/ reaches the dispatchers (/metrics and anything else stay internal): 404.
// - Authentication: a request without a bearer credential gets 401 here and never reaches a
//   dispatcher; a credential is checked by the dispatcher, before any handler runs (its
//   authentication middleware answers 401 for an unknown or revoked key). Checking keys here
//   (auth_request) would cost a second round trip per request, or a cache that keeps a revoked
//   key alive; the dispatcher already holds the key hashes nginx cannot read.
// - Rate limits: per API key (the bearer credential) and per client address, 429 with the
//   standard error body and Retry-After.
// - Retries across dispatchers (passive health: `max_fails`/`fail_timeout`): GET, HEAD, PUT,
//   DELETE, OPTIONS are retried on the next dispatcher after an error, a timeout, 502, 503 or
//   504; a POST only when it is a job submission or retry carrying an Idempotency-Key, which
//   the dispatcher answers once and replays after (a second dispatcher returns the first
//   response; with a shared database the key is shared). Any other POST is never sent twice
//   (nginx's default for non-idempotent requests), so an upload or a cancel is not repeated.
// - Uploads and downloads stream through (no request or response buffering, no size limit
//   here: the dispatcher enforces its quotas); SSE event streams are unbuffered with a long
//   read timeout.
// - Every error nginx itself makes (401, 404, 413, 429, 502, 504) is the standard error JSON
//   `{"error":{"code","message","details"}}`, like the dispatcher's own.
// - Keep-alive to the dispatchers, shorter-lived than their idle timeout.

public enum NginxConfig {
    /// The whole nginx.conf for `plan` (validated first).
    public static func render(_ plan: GatewayPlan) throws(GatewayError) -> String {
        try plan.validate()
        let p = plan.paths
        var out = """
        # nginx.conf of the Spool gateway, rendered by `spool gateway` from its settings at every
        # start: edit the settings, not this file. TLS for clients, /api/v1/ to the dispatchers.
        daemon off;
        worker_processes \(plan.workers);
        pid \(p.pid);
        error_log \(p.errorLog) warn;

        events {
            worker_connections 4096;
        }

        http {
            server_tokens off;
            tcp_nodelay on;
            default_type application/json;
            log_format spool '$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent '
                             '$request_time $upstream_addr $upstream_status id=$spool_request_id';
            access_log \(p.accessLog) spool;
            client_body_temp_path \(p.temp)/body;
            proxy_temp_path \(p.temp)/proxy;
            fastcgi_temp_path \(p.temp)/fastcgi;
            uwsgi_temp_path \(p.temp)/uwsgi;
            scgi_temp_path \(p.temp)/scgi;

            # The client's request id if it sent one (the dispatcher checks it), else nginx's.
            map $http_x_request_id $spool_request_id {
                "" $request_id;
                default $http_x_request_id;
            }
            # The bearer credential: the per-key rate limit's key; empty when there is none.
            map $http_authorization $spool_key {
                "~*^bearer [!-~]+$" $http_authorization;
                default "";
            }
            # 1 when sending the request to a second dispatcher is safe (see the header).
            map "$request_method $uri $http_idempotency_key" $spool_replayable {
                default 0;
                "~^(GET|HEAD|PUT|DELETE|OPTIONS) " 1;
                "~^POST /api/v1/jobs(/[^/ ]+/retry)? ." 1;
            }

            limit_req_zone $spool_key zone=spool_key:10m rate=\(plan.ratePerKey)r/s;
            limit_req_zone $binary_remote_addr zone=spool_address:10m rate=\(plan.ratePerAddress)r/s;
            limit_req_status 429;
            limit_req_log_level warn;

            upstream spool_dispatchers {

        """
        for u in plan.upstreams {
            out += "        server \(u) max_fails=\(plan.maxFails) fail_timeout=\(plan.failTimeoutSeconds)s;\n"
        }
        out += """
                keepalive \(plan.keepAliveConnections);
                keepalive_timeout \(plan.keepAliveSeconds)s;
            }
        \(mediaCache(plan))

            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $spool_request_id;
            proxy_connect_timeout 2s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 15s;
            client_body_buffer_size 64k;
            client_max_body_size \(plan.maxBodyKiB)k;

            server {
                listen \(plan.listen) ssl;
                server_name _;
                ssl_certificate \(p.serverCertificate);
                ssl_certificate_key \(p.serverKey);
                ssl_protocols TLSv1.3;
                ssl_session_cache shared:spool_tls:1m;
                ssl_session_timeout 10m;
        \(errorPages(indent: 8))
                location ~ ^/api/v1/(health|ready|version|openapi\\.json)$ {
                    \(limits(plan, perKey: false))
                    proxy_pass http://spool_dispatchers;
                }
                location ~ ^/api/v1/jobs/[^/]+/events$ {
                    if ($spool_key = "") { return 401; }
                    \(limits(plan, perKey: true))
                    proxy_buffering off;
                    proxy_read_timeout \(plan.eventStreamTimeoutSeconds)s;
                    proxy_pass http://spool_dispatchers;
                }
                location /api/v1/files {
                    if ($spool_key = "") { return 401; }
                    \(limits(plan, perKey: true))
        \(streaming(indent: 12))
                    proxy_pass http://spool_dispatchers;
                }
                location /api/v1/ {
                    if ($spool_key = "") { return 401; }
        \(errorPages(indent: 12))
                    error_page 418 = @spool_replayable;
                    # The 418 is the first error page; the replayable location's own 429 or
                    # 502 needs a second one (our error locations answer with a body, so no loop).
                    recursive_error_pages on;
                    if ($spool_replayable) { return 418; }
                    \(limits(plan, perKey: true))
                    proxy_pass http://spool_dispatchers;
                }
                location @spool_replayable {
                    \(limits(plan, perKey: true))
                    proxy_next_upstream error timeout http_502 http_503 http_504 non_idempotent;
                    proxy_pass http://spool_dispatchers;
                }
        \(mediaLocation(plan))
                location / {
                    return 404;
                }
        \(errorLocations(indent: 8))
            }

        """
        if let engines = plan.engineListen {
            out += """

                # Engines inside the trusted network: plain HTTP, engine endpoints and health only.
                server {
                    listen \(engines);
                    server_name _;
            \(errorPages(indent: 8))
                    location ~ ^/api/v1/(health|ready|version)$ {
                        \(limits(plan, perKey: false))
                        proxy_pass http://spool_dispatchers;
                    }
                    location /api/v1/engines/ {
                        if ($spool_key = "") { return 401; }
                        \(limits(plan, perKey: true))
            \(streaming(indent: 12))
                        proxy_pass http://spool_dispatchers;
                    }
                    location / {
                        return 404;
                    }
            \(errorLocations(indent: 8))
                }

            """
        }
        out += "}\n"
        return out
    }

    /// The media edge's cache and origin (http level), or nothing.
    static func mediaCache(_ plan: GatewayPlan) -> String {
        guard let m = plan.media else { return "" }
        return """
                # The media edge: objects from the store, cached on disk.
                proxy_cache_path \(plan.paths.mediaCache) levels=1:2 keys_zone=spool_media:10m max_size=\(m.cacheMiB)m inactive=\(m.cacheSeconds)s use_temp_path=off;
                upstream spool_media_origin {
                    server \(m.origin);
                    keepalive 8;
                }

        """
    }

    /// /media/KEY on the TLS listener: signed (when there is a secret), GET and HEAD only,
    /// served from the cache or fetched whole from the origin (with caching on, nginx sends
    /// the origin no Range and cuts ranges from the cached object). The cache key is the path, not the signature, so every signed URL
    /// of one object shares one cached copy.
    static func mediaLocation(_ plan: GatewayPlan) -> String {
        guard let m = plan.media else { return "" }
        var lines = ["location /media/ {",
                     "    " + limits(plan, perKey: false),
                     "    if ($request_method !~ ^(GET|HEAD)$) { return 405; }"]
        if let secret = m.secret {
            lines += ["    secure_link $arg_md5,$arg_expires;",
                      "    secure_link_md5 \"$secure_link_expires$uri \(secret)\";",
                      "    if ($secure_link = \"\") { return 403; }",
                      "    if ($secure_link = \"0\") { return 410; }"]
        }
        lines += ["    proxy_cache spool_media;",
                  "    proxy_cache_key $uri;",
                  "    proxy_cache_valid 200 \(m.cacheSeconds)s;",
                  "    proxy_cache_lock on;",
                  "    proxy_cache_use_stale error timeout updating;",
                  "    proxy_ignore_headers Set-Cookie Cache-Control Expires;",
                  "    proxy_hide_header x-amz-request-id;",
                  "    proxy_hide_header x-amz-id-2;",
                  "    proxy_set_header Host \(m.origin);",
                  "    proxy_set_header Connection \"\";",
                  "    proxy_set_header Authorization \"\";",
                  "    proxy_read_timeout 300s;",
                  "    add_header X-Cache-Status $upstream_cache_status always;",
                  "    rewrite ^/media/(.*)$ \(m.originPath)/$1? break;",
                  "    proxy_pass http://spool_media_origin;",
                  "}"]
        return lines.map { String(repeating: " ", count: 8) + $0 }.joined(separator: "\n")
    }

    /// The rate limits of a location: per address always, per key where a key is required.
    static func limits(_ plan: GatewayPlan, perKey: Bool) -> String {
        let address = "limit_req zone=spool_address burst=\(plan.burstPerAddress) nodelay;"
        return perKey ? "limit_req zone=spool_key burst=\(plan.burstPerKey) nodelay;\n" + String(repeating: " ", count: 12) + address : address
    }

    /// Request and response bodies streamed through, for uploads, downloads and outputs.
    static func streaming(indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        return [
            "client_max_body_size 0;",
            "proxy_request_buffering off;",
            "proxy_buffering off;",
            "proxy_send_timeout 300s;",
            "proxy_read_timeout 300s;",
        ].map { pad + $0 }.joined(separator: "\n")
    }

    /// The errors nginx makes itself, each answered by a named location below. A location
    /// with an error_page of its own must repeat these (nginx inherits error_page only into
    /// levels that define none).
    static let madeHere: [(status: Int, code: String, message: String)] = [
        (401, "unauthorized", "this request has no API key: send Authorization: Bearer KEY"),
        (403, "forbidden", "the signature of this URL does not match: use media URLs as job results give them"),
        (404, "not_found", "no such endpoint: the API is under /api/v1/"),
        (405, "method_not_allowed", "media is read with GET or HEAD"),
        (410, "expired", "this signed URL has expired: read the job again for a fresh one"),
        (413, "payload_too_large", "the request body is larger than the gateway accepts for this endpoint"),
        (429, "rate_limited", "too many requests for this API key or client address: retry after a second"),
        (502, "unavailable", "no dispatcher answered: retry later"),
        (504, "unavailable", "the dispatcher did not answer in time: retry later"),
    ]

    static func errorPages(indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        return madeHere.map { "\(pad)error_page \($0.status) = @spool_\($0.status);" }.joined(separator: "\n")
    }

    static func errorLocations(indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        return madeHere.map { e in
            var lines = ["location @spool_\(e.status) {", "    default_type application/json;",
                         "    add_header X-Request-Id $spool_request_id always;"]
            if e.status == 401 { lines.append("    add_header WWW-Authenticate 'Bearer realm=\"spool\"' always;") }
            if e.status == 429 { lines.append("    add_header Retry-After 1 always;") }
            lines.append("    return \(e.status) '{\"error\":{\"code\":\"\(e.code)\",\"message\":\"\(e.message)\",\"details\":{}}}';")
            lines.append("}")
            return lines.map { pad + $0 }.joined(separator: "\n")
        }.joined(separator: "\n")
    }
}
