// Dispatcher.EngineUploadRoutes: engines writing their outputs straight into the store
// (storage.backend = s3), the dispatcher signing instead of relaying:
//   POST   engines/{id}/jobs/{job}/output-uploads          {"name","size"} → 201 {"file_id","parts":[{"number","offset","length","url"}],"expires_at"}
//   POST   engines/{id}/jobs/{job}/output-uploads/{file}/complete   {"parts":["ETAG",...],"sha256"} → 201 {"file_id","name","size","sha256"}
//   DELETE engines/{id}/jobs/{job}/output-uploads/{file}   → 204 (abandoned)
// Each call needs the engine's key and the job's current lease (409 otherwise); begin
// checks the output's size against the per-file limit and the quota before any URL is
// signed. With local storage begin answers 501 and engines upload through /outputs.
import Files
import JSON
import SpoolModel
import Web

extension DispatchServer {
    func installEngineUploadRoutes(on v1: inout RouteBuilder) {
        let engines = self.engines, jobs = self.jobs, files = self.files

        v1.post("engines/:id/jobs/:job/output-uploads", body: .buffered(max: 16 << 10)) { req in
            let (_, job) = try await leasedJob(req, engines, jobs)
            let root = try req.json().root
            guard let name = try? root["name"]?.string(), isSafeOutputName(name) else {
                throw ModelError.invalidField("/name", "must be a relative path of letters, digits, '.', '-', '_' and '/' (no '..')")
            }
            guard let size = try? root["size"]?.int64(), size >= 0 else {
                throw ModelError.invalidField("/size", "must be the output's size in bytes")
            }
            let (id, plan) = try await files.beginDirectUpload(tenant: job.tenant, contentType: contentType(ofOutput: name), size: size)
            return .json(201) { w in
                w.beginObject()
                w.field("file_id", id.text)
                w.field("name", name)
                w.field("size", size)
                w.key("parts")
                w.beginArray()
                for p in plan.parts {
                    w.beginObject()
                    w.field("number", p.number)
                    w.field("offset", p.offset)
                    w.field("length", p.length)
                    w.field("url", p.url)
                    w.endObject()
                }
                w.endArray()
                w.field("expires_at", plan.expiresAt)
                w.endObject()
            }
        }

        v1.post("engines/:id/jobs/:job/output-uploads/:file/complete", body: .buffered(max: 1 << 20)) { req in
            let (_, job) = try await leasedJob(req, engines, jobs)
            guard let id = req.pathParameters["file"].flatMap(FileID.init) else { throw ModelError(.notFound, "no such direct upload") }
            let root = try req.json().root
            guard let list = root["parts"], list.kind == .array else {
                throw ModelError.invalidField("/parts", "must list the parts' ETags in order")
            }
            var etags: [String] = []
            for (i, e) in list.elements.enumerated() {
                guard let etag = try? e.string() else { throw ModelError.invalidField("/parts/\(i)", "must be the ETag the store answered") }
                etags.append(etag)
            }
            let sha = (try? root["sha256"]?.string()) ?? ""
            let record = try await files.finishDirectUpload(id: id, tenant: job.tenant, etags: etags, sha256: sha)
            return .json(201) { w in
                w.beginObject()
                w.field("file_id", record.id.text)
                w.field("size", record.size)
                w.field("sha256", record.sha256)
                w.endObject()
            }
        }

        v1.delete("engines/:id/jobs/:job/output-uploads/:file") { req in
            let (_, job) = try await leasedJob(req, engines, jobs)
            guard let id = req.pathParameters["file"].flatMap(FileID.init),
                  await files.abortDirectUpload(id: id, tenant: job.tenant) else {
                throw ModelError(.notFound, "no such direct upload in progress")
            }
            return Response(status: 204)
        }
    }
}
