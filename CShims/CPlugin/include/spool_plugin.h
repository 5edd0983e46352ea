/* spool_plugin.h: the transcoder plugin ABI of Spool engines, version 1.
 *
 * A plugin is a shared object (C, Swift with @_cdecl, Rust with extern "C", ...) in the
 * engine's plugin directory (`spool engine --plugin-dir DIR`) that exports one function,
 *
 *     const spool_plugin *spool_plugin_entry(void);
 *
 * returning a static table. The engine loads every *.so there at start (dlopen), refuses a
 * table of another ABI version or a missing symbol or function with a message, and merges
 * each plugin's capabilities into its own. A job whose required_capabilities name one of a
 * plugin's capabilities runs with that plugin, inside the same sandboxed child as every
 * transcode (`spool worker`): no network, only the job's input (read-only) and its output
 * directory (writable). Plugin jobs may start programs (the only difference from the
 * built-in transcoder's seccomp profile); everything else stays refused.
 *
 * The calls, all from one thread of the child:
 *   capabilities_json()  a JSON object, static storage:
 *                        {"capabilities":["name", ...], ...anything else to report}
 *   start(request)       request is the job as JSON:
 *                        {"job_id":S, "spec":{"input":{...}, "preset":S | "outputs":[...] |
 *                         "ladder":... | "custom":{...}, "quality":B, "limits":{...}},
 *                         "input":PATH, "output_directory":PATH (to create), "threads":N,
 *                         "required_capabilities":[S, ...]}
 *                        Returns a job, or NULL with a reason in error[error_size].
 *   poll(job, ms, ...)   waits up to ms for the job to move, fills progress, and returns
 *                        SPOOL_PLUGIN_RUNNING, SPOOL_PLUGIN_DONE (message: "" or a JSON
 *                        object such as {"work":N}, N = pixels x frames encoded) or
 *                        SPOOL_PLUGIN_FAILED (message: the reason a user reads; it may
 *                        start with a code and a colon, "invalid_data: ...").
 *   cancel(job)          asks the job to stop; poll then answers FAILED soon.
 *   free_job(job)        after DONE or FAILED (or a cancel): releases everything.
 * Every output file the job leaves in output_directory is uploaded as one of its outputs.
 */
#ifndef SPOOL_PLUGIN_H
#define SPOOL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPOOL_PLUGIN_ABI_VERSION 1u

enum {
    SPOOL_PLUGIN_RUNNING = 0,
    SPOOL_PLUGIN_DONE = 1,
    SPOOL_PLUGIN_FAILED = 2,
};

typedef struct spool_plugin_progress {
    double fraction;      /* 0...1, or < 0 when unknown */
    double fps;           /* frames per second of wall time, or < 0 */
    double eta_seconds;   /* or < 0 when unknown */
    double speed;         /* media seconds per wall second, or < 0 */
    long long frames;     /* frames done so far */
} spool_plugin_progress;

typedef struct spool_plugin_job spool_plugin_job;

typedef struct spool_plugin {
    uint32_t abi_version; /* SPOOL_PLUGIN_ABI_VERSION */
    const char *name;     /* [a-z0-9_-]{1,32} */
    const char *(*capabilities_json)(void);
    spool_plugin_job *(*start)(const char *request_json, char *error, size_t error_size);
    int (*poll)(spool_plugin_job *job, int timeout_ms, spool_plugin_progress *progress, char *message, size_t message_size);
    void (*cancel)(spool_plugin_job *job);
    void (*free_job)(spool_plugin_job *job);
} spool_plugin;

typedef const spool_plugin *(*spool_plugin_entry_fn)(void);
#define SPOOL_PLUGIN_ENTRY "spool_plugin_entry"

#ifdef __cplusplus
}
#endif
#endif
