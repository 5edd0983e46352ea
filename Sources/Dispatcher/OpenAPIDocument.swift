// Dispatcher.OpenAPIDocument: the OpenAPI 3.1 description of /api/v1, served without
// credentials at GET /api/v1/openapi.json. It is the contract schemathesis checks the live
// server against (Tests/External/schemathesis.sh), and OpenAPIDocumentTests checks that every
// route the router has is described here and nothing else is. Request bodies are closed
// (`additionalProperties: false`) and carry the server's limits, so generated input is both
// valid and invalid; response bodies name the fields clients rely on and stay open to
// additions. Every 4xx/5xx is the one error envelope.
//
// The document is a literal (reviewed as JSON, served as bytes, never rebuilt per request).
import Web

extension DispatchServer {
    func installOpenAPI(on v1: inout RouteBuilder) {
        let body = Array(OpenAPIDocument.json.utf8)
        v1.get("openapi.json") { _ in
            Response(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-cache")], body: body)
        }
    }
}

public enum OpenAPIDocument {
    public static let json = #"""
{
 "openapi": "3.1.0",
 "info": {"title": "Spool dispatch API", "version": "1",
  "description": "Jobs, files, engines and API keys of a Spool dispatch server. Every call except health, version and this document takes `Authorization: Bearer KEY`. Every 4xx/5xx answer is `{\"error\":{\"code\",\"message\",\"details\"}}`."},
 "security": [{"bearer": []}],
 "paths": {
  "/api/v1/health": {"get": {"operationId": "health", "security": [], "summary": "Liveness",
   "responses": {"200": {"description": "alive", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}, "4XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/version": {"get": {"operationId": "version", "security": [], "summary": "Server and API version",
   "responses": {"200": {"description": "versions", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Version"}}}}, "4XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/ready": {"get": {"operationId": "ready", "security": [], "summary": "Readiness: database, storage and (with Redis) the queue reachable",
   "responses": {"200": {"$ref": "#/components/responses/Ready"}, "503": {"$ref": "#/components/responses/Ready"}, "4XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/openapi.json": {"get": {"operationId": "openapi", "security": [], "summary": "This document",
   "responses": {"200": {"description": "the OpenAPI document", "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}}}}},
  "/metrics": {"get": {"operationId": "metrics", "security": [], "summary": "Prometheus metrics (text format): requests by method, route and status, latencies, jobs by state, bytes moved, database latency",
   "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "4XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/files": {
   "post": {"operationId": "uploadFile", "summary": "Upload a file: the raw bytes are the body (Content-Length or chunked); the Content-Type given is kept",
    "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {"201": {"description": "stored", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/File"}}},
      "links": {"GetFile": {"operationId": "getFile", "parameters": {"id": "$response.body#/id"}}, "DeleteFile": {"operationId": "deleteFile", "parameters": {"id": "$response.body#/id"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "411": {"$ref": "#/components/responses/Error"},
     "413": {"$ref": "#/components/responses/Error"}, "507": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "get": {"operationId": "listFiles", "summary": "The caller's files, oldest first (an admin key sees every tenant's)",
    "parameters": [{"$ref": "#/components/parameters/Tenant"}, {"$ref": "#/components/parameters/Limit"}, {"$ref": "#/components/parameters/Cursor"}, {"$ref": "#/components/parameters/Offset"}],
    "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FileList"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/files/{id}": {
   "parameters": [{"$ref": "#/components/parameters/FileID"}],
   "get": {"operationId": "getFile", "summary": "Download a file (Range: one byte range; ETag, Last-Modified)",
    "parameters": [{"$ref": "#/components/parameters/Range"}, {"$ref": "#/components/parameters/IfNoneMatch"}, {"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/IfUnmodifiedSince"}],
    "responses": {"200": {"description": "the whole file, with the Content-Type it was uploaded with", "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
     "302": {"description": "the bytes are elsewhere (a storage URL in Location)", "headers": {"Location": {"schema": {"type": "string"}}}},
     "206": {"description": "the range asked for", "headers": {"Content-Range": {"schema": {"type": "string"}}}, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
     "304": {"description": "not modified"},
     "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "412": {"$ref": "#/components/responses/Error"}, "416": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "head": {"operationId": "headFile", "summary": "The download's headers without its body",
    "responses": {"200": {"description": "the headers GET would send", "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}}, "304": {"description": "not modified"}, "401": {"description": "unauthorized"}, "404": {"description": "no such file"}}},
   "delete": {"operationId": "deleteFile", "summary": "Delete a file",
    "parameters": [{"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/IfUnmodifiedSince"}],
    "responses": {"204": {"description": "deleted"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "412": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/jobs": {
   "post": {"operationId": "createJob", "summary": "Submit a job (a replay of the same Idempotency-Key and body answers the first response byte for byte)",
    "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobRequest"}}}},
    "responses": {"201": {"description": "created", "headers": {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
      "links": {"GetJob": {"operationId": "getJob", "parameters": {"id": "$response.body#/id"}}, "CancelJob": {"operationId": "cancelJob", "parameters": {"id": "$response.body#/id"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
     "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "get": {"operationId": "listJobs", "summary": "Jobs, oldest first; keyset pages (cursor) or offset pages",
    "parameters": [{"$ref": "#/components/parameters/State"}, {"$ref": "#/components/parameters/Tenant"}, {"$ref": "#/components/parameters/Limit"}, {"$ref": "#/components/parameters/Cursor"}, {"$ref": "#/components/parameters/Offset"}],
    "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobList"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/jobs/{id}": {
   "parameters": [{"$ref": "#/components/parameters/JobID"}],
   "get": {"operationId": "getJob", "summary": "A job (ETag over its state and update time; If-None-Match gives 304)",
    "parameters": [{"$ref": "#/components/parameters/IfNoneMatch"}, {"$ref": "#/components/parameters/IfMatch"}, {"$ref": "#/components/parameters/IfUnmodifiedSince"}],
    "responses": {"200": {"description": "the job", "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
     "304": {"description": "not modified"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "412": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "head": {"operationId": "headJob", "summary": "The job's headers without its body",
    "responses": {"200": {"description": "the headers GET would send", "headers": {"ETag": {"$ref": "#/components/headers/ETag"}}}, "304": {"description": "not modified"}, "401": {"description": "unauthorized"}, "404": {"description": "no such job"}}}},
  "/api/v1/jobs/{id}/cancel": {
   "parameters": [{"$ref": "#/components/parameters/JobID"}],
   "post": {"operationId": "cancelJob", "summary": "Cancel a job (409 invalid_transition once it has finished)",
    "responses": {"200": {"description": "the job, cancelled", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
     "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/jobs/{id}/retry": {
   "parameters": [{"$ref": "#/components/parameters/JobID"}],
   "post": {"operationId": "retryJob", "summary": "Run a failed job again; with an Idempotency-Key a repeat answers the first response byte for byte",
    "parameters": [{"$ref": "#/components/parameters/IdempotencyKeyOptional"}],
    "responses": {"200": {"description": "the job, pending again", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
     "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/jobs/{id}/events": {
   "parameters": [{"$ref": "#/components/parameters/JobID"}],
   "get": {"operationId": "jobEvents", "summary": "Server-sent events: the job's state changes and progress, resumable with Last-Event-ID; ends when the job has finished",
    "parameters": [{"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 64}}],
    "responses": {"200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
     "204": {"description": "resumed after the last event of a finished job: nothing more will come"},
     "400": {"$ref": "#/components/responses/Error"},
     "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/jobs/{id}/webhooks": {
   "parameters": [{"$ref": "#/components/parameters/JobID"}],
   "get": {"operationId": "jobWebhooks", "summary": "The job's webhook deliveries, each with its log of attempts",
    "responses": {"200": {"description": "deliveries", "content": {"application/json": {"schema": {"type": "object", "required": ["data"], "properties": {
      "data": {"type": "array", "items": {"$ref": "#/components/schemas/Delivery"}}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/webhooks/secret": {
   "get": {"operationId": "webhookSecret", "summary": "The signing secret of the caller's tenant (admins: ?tenant=), made on first use",
    "parameters": [{"$ref": "#/components/parameters/Tenant"}],
    "responses": {"200": {"description": "the secret", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookSecret"}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/webhooks/secret/rotate": {
   "post": {"operationId": "rotateWebhookSecret", "summary": "A new signing secret for the caller's tenant (admins: ?tenant=)",
    "parameters": [{"$ref": "#/components/parameters/Tenant"}],
    "responses": {"200": {"description": "the new secret", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookSecret"}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines": {
   "get": {"operationId": "listEngines", "summary": "Registered engines",
    "parameters": [{"name": "state", "in": "query", "required": false, "schema": {"enum": ["online", "busy", "draining", "offline"]}}, {"$ref": "#/components/parameters/Limit"}, {"$ref": "#/components/parameters/Cursor"}, {"$ref": "#/components/parameters/Offset"}],
    "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EngineList"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}],
   "get": {"operationId": "getEngine", "summary": "An engine",
    "responses": {"200": {"description": "the engine", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Engine"}}}},
     "304": {"description": "not modified"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "head": {"operationId": "headEngine", "summary": "The engine's headers without its body",
    "responses": {"200": {"description": "the headers GET would send"}, "304": {"description": "not modified"}, "401": {"description": "unauthorized"}, "404": {"description": "no such engine"}}}},
  "/api/v1/queues/jobs/dead-letters": {
   "get": {"operationId": "jobDeadLetters", "summary": "Admin: the job queue's dead letters (jobs that failed after their last attempt)",
    "parameters": [{"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
    "responses": {"200": {"description": "newest last", "content": {"application/json": {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": {
      "type": "object", "required": ["message_id", "job_id", "reason", "deliveries", "at"], "properties": {"message_id": {"type": "string"}, "job_id": {"type": "string"},
      "reason": {"type": "string"}, "deliveries": {"type": "integer", "minimum": 0}, "at": {"type": "string"}}}}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/join-tokens": {
   "post": {"operationId": "createJoinToken", "summary": "Admin: a join token engines register with (the secret is in this answer only)",
    "requestBody": {"required": false, "content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
     "expires_in_seconds": {"type": "integer", "minimum": 60, "maximum": 31536000}, "note": {"type": "string", "maxLength": 200, "pattern": "^[\\x20-\\x7E]*$"}}}}}},
    "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {"allOf": [{"$ref": "#/components/schemas/JoinToken"}, {"type": "object", "required": ["token"], "properties": {"token": {"type": "string", "pattern": "^sjt_"}}}]}}},
      "links": {"RevokeJoinToken": {"operationId": "revokeJoinToken", "parameters": {"id": "$response.body#/id"}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "get": {"operationId": "listJoinTokens", "summary": "Admin: the join tokens (never their secrets)",
    "responses": {"200": {"description": "the tokens", "content": {"application/json": {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/JoinToken"}}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/join-tokens/{id}": {
   "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "maxLength": 64}}],
   "delete": {"operationId": "revokeJoinToken", "summary": "Admin: revoke a join token (registered engines keep their own tokens)",
    "responses": {"204": {"description": "revoked"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/register": {
   "post": {"operationId": "registerEngine", "summary": "Engines: register with the join token (or an admin key) as the bearer; a restarted engine passes its engine_id and token to keep its id",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EngineRegistration"}}}},
    "responses": {"201": {"description": "registered", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EngineCredentials"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/heartbeat": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}],
   "post": {"operationId": "engineHeartbeat", "summary": "Engines (engine token): state, load, the jobs it runs, capabilities when changed; jobs it holds but does not list are taken back after a grace period",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Heartbeat"}}}},
    "responses": {"200": {"description": "recorded", "content": {"application/json": {"schema": {"type": "object", "required": ["engine_id", "state", "heartbeat_interval_seconds"], "properties": {"heartbeat_interval_seconds": {"type": "integer", "minimum": 1}}}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/lease": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}],
   "post": {"operationId": "leaseJob", "summary": "Engines (engine token): long-poll for a job; the answer carries the lease epoch every later call presents",
    "parameters": [{"name": "wait", "in": "query", "required": false, "schema": {"type": "number", "minimum": 0, "maximum": 60}}],
    "responses": {"200": {"description": "a lease", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Lease"}}}},
     "204": {"description": "no job fitted within the wait"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/input": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}, {"$ref": "#/components/parameters/LeaseEpoch"}],
   "get": {"operationId": "leasedInput", "summary": "Engines (engine token): the leased job's input file (ranges as for files)",
    "parameters": [{"$ref": "#/components/parameters/Range"}],
    "responses": {"200": {"description": "the bytes", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
     "206": {"description": "a range"}, "307": {"description": "fetch it from storage"}, "416": {"$ref": "#/components/responses/Error"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/outputs": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}, {"$ref": "#/components/parameters/LeaseEpoch"},
    {"name": "name", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"}}],
   "post": {"operationId": "uploadOutput", "summary": "Engines (engine token): one output file of the leased job (streamed body)",
    "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
    "responses": {"201": {"description": "stored", "content": {"application/json": {"schema": {"type": "object", "required": ["file_id", "name", "size", "sha256"]}}}},
     "413": {"$ref": "#/components/responses/Error"}, "507": {"$ref": "#/components/responses/Error"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/output-uploads": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}, {"$ref": "#/components/parameters/LeaseEpoch"}],
   "post": {"operationId": "beginOutputUpload", "summary": "Engines (engine token): write one output straight into the store (S3): presigned PUT URLs for its parts",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["name", "size"], "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"}, "size": {"type": "integer", "minimum": 0}}}}}},
    "responses": {"201": {"description": "where each part goes", "content": {"application/json": {"schema": {"type": "object", "required": ["file_id", "parts", "expires_at"], "properties": {
      "file_id": {"type": "string"}, "expires_at": {"type": "integer"}, "parts": {"type": "array", "items": {"type": "object", "required": ["number", "offset", "length", "url"]}}}}}}},
     "413": {"$ref": "#/components/responses/Error"}, "501": {"$ref": "#/components/responses/Error"}, "507": {"$ref": "#/components/responses/Error"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/output-uploads/{file}/complete": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}, {"$ref": "#/components/parameters/LeaseEpoch"},
    {"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}],
   "post": {"operationId": "completeOutputUpload", "summary": "Engines (engine token): the parts are in the store; commit the output file",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["parts", "sha256"], "properties": {
      "parts": {"type": "array", "items": {"type": "string"}}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}}}},
    "responses": {"201": {"description": "stored", "content": {"application/json": {"schema": {"type": "object", "required": ["file_id", "size", "sha256"]}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/output-uploads/{file}": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}, {"$ref": "#/components/parameters/LeaseEpoch"},
    {"name": "file", "in": "path", "required": true, "schema": {"type": "string"}}],
   "delete": {"operationId": "abortOutputUpload", "summary": "Engines (engine token): abandon a direct output upload (nothing of it stays)",
    "responses": {"204": {"description": "abandoned"}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/progress": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}],
   "post": {"operationId": "reportProgress", "summary": "Engines (engine token): progress of the leased job (the first moves it to transcoding)",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Progress"}}}},
    "responses": {"200": {"description": "recorded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobStateBrief"}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/complete": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}],
   "post": {"operationId": "completeJob", "summary": "Engines (engine token): the leased job is done; its outputs (uploaded before) become the result",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Completion"}}}},
    "responses": {"200": {"description": "completed", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobStateBrief"}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/engines/{id}/jobs/{job}/fail": {
   "parameters": [{"$ref": "#/components/parameters/EngineID"}, {"$ref": "#/components/parameters/LeasedJob"}],
   "post": {"operationId": "failJob", "summary": "Engines (engine token): the leased job failed (retried by policy), or requeue: given back without counting an attempt",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Failure"}}}},
    "responses": {"200": {"description": "recorded", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobStateBrief"}}}}, "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/keys": {
   "post": {"operationId": "createKey", "summary": "Admin: create an API key for a tenant (the secret is in this answer only)",
    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyRequest"}}}},
    "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewKey"}}},
      "links": {"RevokeKey": {"operationId": "revokeKey", "parameters": {"id": "$response.body#/id"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}},
   "get": {"operationId": "listKeys", "summary": "Admin: the API keys (never their secrets)",
    "parameters": [{"$ref": "#/components/parameters/Limit"}, {"$ref": "#/components/parameters/Cursor"}, {"$ref": "#/components/parameters/Offset"}],
    "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyList"}}}},
     "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}},
  "/api/v1/keys/{id}": {
   "parameters": [{"$ref": "#/components/parameters/KeyID"}],
   "delete": {"operationId": "revokeKey", "summary": "Admin: revoke an API key (not the last admin key in force: 409)",
    "responses": {"204": {"description": "revoked"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "4XX": {"$ref": "#/components/responses/Error"}, "5XX": {"$ref": "#/components/responses/Error"}}}}
 },
 "components": {
  "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key: SPOOL_ADMIN_KEY, the generated admin key, or one made with POST /api/v1/keys"}},
  "headers": {"ETag": {"schema": {"type": "string"}}},
  "parameters": {
   "JobID": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^job_[0-7][0-9A-HJKMNP-TV-Z]{25}$"}},
   "FileID": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^file_[0-7][0-9A-HJKMNP-TV-Z]{25}$"}},
   "KeyID": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$"}},
   "EngineID": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^eng_[0-7][0-9A-HJKMNP-TV-Z]{25}$"}},
   "LeasedJob": {"name": "job", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^job_[0-7][0-9A-HJKMNP-TV-Z]{25}$"}},
   "LeaseEpoch": {"name": "lease_epoch", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 0}},
   "Limit": {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
   "Cursor": {"name": "cursor", "in": "query", "required": false, "description": "from next_page_url; not with offset", "schema": {"type": "string", "maxLength": 200}},
   "Offset": {"name": "offset", "in": "query", "required": false, "description": "not with cursor", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000}},
   "State": {"name": "state", "in": "query", "required": false, "schema": {"$ref": "#/components/schemas/JobState"}},
   "Tenant": {"name": "tenant", "in": "query", "required": false, "description": "admin keys: any tenant; a tenant key may name only its own (403 otherwise)", "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9_-]+$"}},
   "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": true, "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$"}, "description": "1 to 255 printable ASCII characters; kept 24 h by default"},
   "IdempotencyKeyOptional": {"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$"}},
   "Range": {"name": "Range", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 100}},
   "IfNoneMatch": {"name": "If-None-Match", "in": "header", "required": false, "schema": {"type": "string", "maxLength": 200}},
   "IfMatch": {"name": "If-Match", "in": "header", "required": false, "description": "412 unless one of these entity tags (strong comparison) or * names the current representation", "schema": {"type": "string", "maxLength": 200}},
   "IfUnmodifiedSince": {"name": "If-Unmodified-Since", "in": "header", "required": false, "description": "412 when modified after this HTTP-date (ignored with If-Match, or when not a date)", "schema": {"type": "string", "maxLength": 64}}
  },
  "responses": {
   "Error": {"description": "the standard error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
   "Ready": {"description": "readiness", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}}
  },
  "schemas": {
   "Error": {"type": "object", "required": ["error"], "additionalProperties": false, "properties": {
    "error": {"type": "object", "required": ["code", "message", "details"], "additionalProperties": false, "properties": {
     "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"}, "message": {"type": "string"},
     "details": {"type": "object", "additionalProperties": {"type": "string"}}}}}},
   "Health": {"type": "object", "required": ["status", "uptime_seconds"], "properties": {"status": {"const": "ok"}, "uptime_seconds": {"type": "integer", "minimum": 0}}},
   "Version": {"type": "object", "required": ["version", "api"], "properties": {"version": {"type": "string"}, "api": {"const": "v1"}}},
   "Ready": {"type": "object", "required": ["status", "checks"], "properties": {"status": {"enum": ["ready", "unavailable"]}, "checks": {"type": "object", "additionalProperties": {"type": "string"}}}},
   "JobState": {"type": "string", "enum": ["pending", "assigned", "transcoding", "completing", "completed", "failed", "retrying", "cancelled"]},
   "File": {"type": "object", "required": ["id", "size", "sha256", "content_type", "created_at"], "properties": {
    "id": {"type": "string", "pattern": "^file_"}, "size": {"type": "integer", "minimum": 0}, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "content_type": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}},
   "FileList": {"type": "object", "required": ["data", "total_count", "next_page_url"], "properties": {
    "data": {"type": "array", "items": {"$ref": "#/components/schemas/File"}}, "total_count": {"type": "integer", "minimum": 0}, "next_page_url": {"type": ["string", "null"]}}},
   "Output": {"type": "object", "additionalProperties": false, "description": "preset or custom", "properties": {
    "preset": {"enum": ["h264-1080p", "h264-720p", "h264-360p", "hevc-1080p", "vp9-720p", "av1-720p"]},
    "custom": {"$ref": "#/components/schemas/CustomSpec"}}},
   "CustomSpec": {"type": "object", "additionalProperties": false, "properties": {
    "codec": {"enum": ["h264", "hevc", "vp9", "av1"]}, "width": {"type": "integer", "minimum": 16, "maximum": 8192, "multipleOf": 2}, "height": {"type": "integer", "minimum": 16, "maximum": 8192, "multipleOf": 2},
    "crf": {"type": "integer", "minimum": 0, "maximum": 51}, "bitrate_kbps": {"type": "integer", "minimum": 50, "maximum": 100000},
    "gop_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 20}, "speed": {"enum": ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]},
    "profile": {"type": "string", "minLength": 1, "maxLength": 16}, "audio_codec": {"enum": ["aac", "opus"]}, "audio_bitrate_kbps": {"type": "integer", "minimum": 16, "maximum": 512},
    "max_fps": {"type": "integer", "minimum": 1, "maximum": 240}}},
   "Rung": {"type": "object", "required": ["name", "width", "height", "max_bitrate_kbps"], "additionalProperties": false, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 32, "pattern": "^[A-Za-z0-9_-]+$"}, "width": {"type": "integer", "minimum": 16, "maximum": 8192, "multipleOf": 2},
    "height": {"type": "integer", "minimum": 16, "maximum": 8192, "multipleOf": 2}, "max_bitrate_kbps": {"type": "integer", "minimum": 50, "maximum": 100000},
    "codec": {"enum": ["h264", "hevc", "vp9", "av1"]}, "profile": {"type": "string", "minLength": 1, "maxLength": 16}}},
   "Ladder": {"type": "object", "required": ["rungs"], "additionalProperties": false, "properties": {
    "rungs": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"$ref": "#/components/schemas/Rung"}},
    "segment_seconds": {"type": "number", "minimum": 1, "maximum": 10}, "audio_codec": {"enum": ["aac", "opus"]},
    "audio_bitrate_kbps": {"type": "integer", "minimum": 16, "maximum": 512}}},
   "JobRequest": {"type": "object", "required": ["input"], "additionalProperties": false,
    "description": "input and exactly one of preset, outputs, ladder, custom",
    "properties": {
    "input": {"type": "object", "required": ["file_id"], "additionalProperties": false, "properties": {"file_id": {"type": "string", "pattern": "^file_[0-7][0-9A-HJKMNP-TV-Z]{25}$"}}},
    "preset": {"enum": ["h264-1080p", "h264-720p", "h264-360p", "hevc-1080p", "vp9-720p", "av1-720p", "hls-ladder-h264"]},
    "outputs": {"type": "array", "minItems": 1, "maxItems": 8, "items": {"$ref": "#/components/schemas/Output"}},
    "ladder": {"oneOf": [{"enum": ["hls-ladder-h264"]}, {"$ref": "#/components/schemas/Ladder"}]},
    "custom": {"$ref": "#/components/schemas/CustomSpec"},
    "priority": {"type": "integer", "minimum": 0, "maximum": 9},
    "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": 2592000},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
    "required_capabilities": {"type": "array", "maxItems": 32, "uniqueItems": true, "items": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._:/-]+$"}},
    "webhook_url": {"type": "string", "maxLength": 2048, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://", "description": "http:// or https:// (any case; stored in lower case), a host, and a port from 1 to 65535 when one is given"},
    "metadata": {"type": "object", "maxProperties": 32, "propertyNames": {"minLength": 1, "maxLength": 64}, "additionalProperties": {"type": "string", "maxLength": 512}},
    "quality": {"type": "boolean", "description": "measure PSNR/SSIM of every output (the result's quality_report)"},
    "limits": {"$ref": "#/components/schemas/TranscodeLimits"}}},
   "TranscodeLimits": {"type": "object", "additionalProperties": false, "description": "limits on the sandboxed transcode, each within the engine's own cap (the lower wins)", "properties": {
    "max_seconds": {"type": "integer", "minimum": 1, "maximum": 604800},
    "max_cpu_seconds": {"type": "integer", "minimum": 1, "maximum": 604800},
    "max_memory_mib": {"type": "integer", "minimum": 256, "maximum": 1048576}}},
   "Job": {"type": "object", "required": ["id", "state", "tenant", "priority", "input", "attempts", "created_at", "updated_at"], "properties": {
    "id": {"type": "string", "pattern": "^job_"}, "state": {"$ref": "#/components/schemas/JobState"},
    "tenant": {"type": "string"}, "priority": {"type": "integer", "minimum": 0, "maximum": 9},
    "input": {"type": "object", "required": ["file_id"], "properties": {"file_id": {"type": "string"}}},
    "required_capabilities": {"type": "array", "items": {"type": "string"}}, "webhook_url": {"type": ["string", "null"]},
    "ttl_seconds": {"type": "integer"}, "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    "quality": {"type": "boolean"}, "limits": {"$ref": "#/components/schemas/TranscodeLimits"},
    "attempts": {"type": "integer", "minimum": 0}, "max_attempts": {"type": "integer", "minimum": 1},
    "reason": {"type": ["string", "null"]}, "progress": {"type": "number", "minimum": 0, "maximum": 100},
    "lease_epoch": {"type": "integer", "minimum": 0}, "engine_id": {"type": ["string", "null"]},
    "next_attempt_at": {"type": ["string", "null"]}, "expires_at": {"type": "string"},
    "result": {"oneOf": [{"type": "null"}, {"type": "object", "required": ["outputs"], "properties": {
     "outputs": {"type": "array", "items": {"type": "object", "required": ["file_id"], "properties": {"file_id": {"type": "string"}, "name": {"type": ["string", "null"]}, "url": {"type": ["string", "null"]}}}},
     "quality_report": {"type": ["object", "null"]}}}]},
    "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"}}},
   "JobList": {"type": "object", "required": ["data", "total_count", "next_page_url"], "properties": {
    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}, "total_count": {"type": "integer", "minimum": 0}, "next_page_url": {"type": ["string", "null"]}}},
   "Delivery": {"type": "object", "required": ["id", "event", "url", "state", "attempts", "log"], "properties": {
    "id": {"type": "string", "pattern": "^msg_"}, "event": {"enum": ["job.completed", "job.failed"]}, "url": {"type": "string"},
    "state": {"enum": ["pending", "delivered", "failed", "disabled"]}, "attempts": {"type": "integer", "minimum": 0},
    "next_attempt_at": {"type": ["string", "null"]}, "created_at": {"type": "string"},
    "log": {"type": "array", "items": {"type": "object", "required": ["attempt", "at", "status", "error", "duration_ms"], "properties": {
     "attempt": {"type": "integer", "minimum": 1}, "at": {"type": "string"}, "status": {"type": ["integer", "null"]}, "error": {"type": ["string", "null"]},
     "duration_ms": {"type": "integer", "minimum": 0}}}}}},
   "WebhookSecret": {"type": "object", "required": ["tenant", "secret"], "properties": {"tenant": {"type": "string"}, "secret": {"type": "string", "pattern": "^whsec_"}}},
   "JoinToken": {"type": "object", "required": ["id", "note", "created_at", "expires_at", "revoked_at"], "properties": {
    "id": {"type": "string", "pattern": "^jt_"}, "note": {"type": "string"}, "created_at": {"type": "string"}, "expires_at": {"type": "string"},
    "revoked_at": {"type": ["string", "null"]}}},
   "EngineRegistration": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x20-\\x7E]+$"}, "host": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7E]+$"},
    "addresses": {"type": "array", "items": {"type": "string"}}, "version": {"type": "string"},
    "tags": {"type": "array", "maxItems": 64, "items": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[\\x20-\\x7E]+$"}},
    "capabilities": {"type": "object"}, "engine_id": {"type": "string"}, "token": {"type": "string"}}},
   "EngineCredentials": {"type": "object", "required": ["engine_id", "token", "heartbeat_interval_seconds"], "properties": {
    "engine_id": {"type": "string", "pattern": "^eng_"}, "token": {"type": "string"}, "heartbeat_interval_seconds": {"type": "integer", "minimum": 1}}},
   "Heartbeat": {"type": "object", "additionalProperties": false, "properties": {
    "state": {"enum": ["online", "busy", "draining", "offline"]}, "load": {"type": "number", "minimum": 0, "maximum": 1000},
    "running": {"type": "array", "items": {"type": "string"}}, "capabilities": {"type": "object"}}},
   "Lease": {"type": "object", "required": ["lease_epoch", "job", "spec"], "properties": {
    "lease_epoch": {"type": "integer", "minimum": 1}, "job": {"$ref": "#/components/schemas/Job"}, "spec": {"type": "object"}}},
   "Progress": {"type": "object", "required": ["lease_epoch"], "additionalProperties": false, "properties": {
    "lease_epoch": {"type": "integer", "minimum": 0}, "progress": {"type": "number", "minimum": 0, "maximum": 100},
    "fps": {"type": "number", "minimum": 0, "maximum": 1000000000}, "speed": {"type": "number", "minimum": 0, "maximum": 1000000000}, "eta_seconds": {"type": ["number", "null"], "minimum": 0, "maximum": 1000000000000}}},
   "Completion": {"type": "object", "required": ["lease_epoch", "outputs"], "additionalProperties": false, "properties": {
    "lease_epoch": {"type": "integer", "minimum": 0},
    "outputs": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["file_id", "name"], "additionalProperties": false, "properties": {"file_id": {"type": "string"}, "name": {"type": "string"}}}},
    "quality_report": {"type": ["object", "null"]}, "work": {"type": "number", "minimum": 0, "maximum": 1000000000000000000}}},
   "Failure": {"type": "object", "required": ["lease_epoch"], "additionalProperties": false, "properties": {
    "lease_epoch": {"type": "integer", "minimum": 0}, "reason": {"type": "string", "maxLength": 1000}, "requeue": {"type": "boolean"}}},
   "JobStateBrief": {"type": "object", "required": ["id", "state", "progress", "lease_epoch"], "properties": {
    "id": {"type": "string"}, "state": {"$ref": "#/components/schemas/JobState"}, "progress": {"type": "number"}, "lease_epoch": {"type": "integer"}}},
   "Engine": {"type": "object", "required": ["id", "name", "host", "tags", "capabilities", "load", "state", "last_heartbeat_at", "registered_at"], "properties": {
    "id": {"type": "string", "pattern": "^eng_"}, "name": {"type": "string"}, "host": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "capabilities": {"type": "object"}, "load": {"type": "number"}, "state": {"enum": ["online", "busy", "draining", "offline"]},
    "last_heartbeat_at": {"type": "string", "format": "date-time"}, "registered_at": {"type": "string", "format": "date-time"}}, "not": {"anyOf": [{"required": ["credential"]}, {"required": ["credential_hash"]}]}},
   "EngineList": {"type": "object", "required": ["data", "total_count", "next_page_url"], "properties": {
    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Engine"}}, "total_count": {"type": "integer", "minimum": 0}, "next_page_url": {"type": ["string", "null"]}}},
   "KeyRequest": {"type": "object", "required": ["tenant"], "additionalProperties": false, "properties": {
    "tenant": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9_-]+$"}, "admin": {"type": "boolean"}}},
   "Key": {"type": "object", "required": ["id", "tenant", "admin", "last4", "origin", "created_at", "revoked_at"], "properties": {
    "id": {"type": "string", "pattern": "^key_"}, "tenant": {"type": "string"}, "admin": {"type": "boolean"}, "last4": {"type": "string"},
    "origin": {"enum": ["api", "environment", "generated"]}, "created_at": {"type": "string", "format": "date-time"},
    "revoked_at": {"type": ["string", "null"], "format": "date-time"}}},
   "NewKey": {"allOf": [{"$ref": "#/components/schemas/Key"}, {"type": "object", "required": ["secret"], "properties": {"secret": {"type": "string", "pattern": "^spk_[a-z2-7]{40}$"}}}]},
   "KeyList": {"type": "object", "required": ["data", "total_count", "next_page_url"], "properties": {
    "data": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/Key"}, {"not": {"required": ["secret"]}}]}}, "total_count": {"type": "integer", "minimum": 0}, "next_page_url": {"type": ["string", "null"]}}}
  }
 }
}
"""#
}
