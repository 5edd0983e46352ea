// The HandBrake plugin: a Spool transcoder plugin (spool_plugin.h, ABI 1) that runs
// HandBrakeCLI (Debian's handbrake-cli). Built by `make plugins` into
// .build/plugins/handbrake.so; an engine loads it with `--plugin-dir .build/plugins`.
//
// Capabilities: "handbrake", and "handbrake-preset:NAME" for each of HandBrake's presets
// (from `HandBrakeCLI --preset-list`, spaces as underscores). A job that requires
// "handbrake" runs here with the HandBrake preset matching its Spool preset (h264-1080p:
// "Fast 1080p30", h264-720p: "Fast 720p30", h264-360p: "Very Fast 480p30", hevc-1080p:
// "H.265 MKV 1080p30"); one that also requires "handbrake-preset:NAME" gets that preset.
// Progress comes from HandBrakeCLI's "Encoding: task 1 of 1, 12.34 % (45.67 fps, avg ...,
// ETA 00h00m07s)" lines; a cancel is SIGTERM, then SIGKILL after 2 seconds (within the
// engine's own grace period of 5).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spool_plugin.h"

#define HANDBRAKE "/usr/bin/HandBrakeCLI"
#define KILL_GRACE_SECONDS 2.0

struct spool_plugin_job {
    pid_t pid;
    int out;                  // HandBrakeCLI's stdout (progress)
    char output[8400];        // the file it writes
    char buffer[8192];        // the current unfinished line
    size_t used;
    spool_plugin_progress progress;
    double cancelled_at;      // 0: not cancelled
    int status;               // -1 while running
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// ---- capabilities -------------------------------------------------------------------------

static char capabilities[65536];

static void append(size_t *n, const char *text) {
    size_t len = strlen(text);
    if (*n + len + 1 < sizeof capabilities) { memcpy(capabilities + *n, text, len); *n += len; capabilities[*n] = 0; }
}

static const char *capabilities_json(void) {
    if (capabilities[0]) return capabilities;
    size_t n = 0;
    if (access(HANDBRAKE, X_OK) != 0) {
        append(&n, "{\"capabilities\":[],\"error\":\"" HANDBRAKE " is not installed (Debian package handbrake-cli)\"}");
        return capabilities;
    }
    append(&n, "{\"capabilities\":[\"handbrake\"");
    FILE *list = popen(HANDBRAKE " --preset-list 2>&1", "r");
    char line[512];
    while (list && fgets(line, sizeof line, list)) {
        // Preset names are indented by exactly four spaces (descriptions by eight).
        if (strncmp(line, "    ", 4) != 0 || line[4] == ' ') continue;
        char *name = line + 4;
        name[strcspn(name, "\r\n")] = 0;
        if (!*name || strlen(name) > 40 || strchr(name, '"') || strchr(name, '\\')) continue;
        char cap[96] = "handbrake-preset:";
        size_t k = strlen(cap);
        for (char *c = name; *c && k < sizeof cap - 1; c++) cap[k++] = *c == ' ' ? '_' : *c;
        cap[k] = 0;
        append(&n, ",\"");
        append(&n, cap);
        append(&n, "\"");
    }
    if (list) pclose(list);
    append(&n, "],\"program\":\"" HANDBRAKE "\"}");
    return capabilities;
}

// ---- the request --------------------------------------------------------------------------

// The string value of "key" (the first one) in a JSON text, unescaped simply (\" and \\).
static int json_string(const char *json, const char *key, char *out, size_t size) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    const char *p = strstr(json, pattern);
    if (!p) return 0;
    p += strlen(pattern);
    size_t n = 0;
    while (*p && *p != '"' && n + 1 < size) {
        if (*p == '\\' && p[1]) p++;
        out[n++] = *p++;
    }
    out[n] = 0;
    return *p == '"';
}

static const char *handbrake_preset_for(const char *spool_preset) {
    if (!strcmp(spool_preset, "h264-1080p")) return "Fast 1080p30";
    if (!strcmp(spool_preset, "h264-720p")) return "Fast 720p30";
    if (!strcmp(spool_preset, "h264-360p")) return "Very Fast 480p30";
    if (!strcmp(spool_preset, "hevc-1080p")) return "H.265 MKV 1080p30";
    return NULL;
}

static spool_plugin_job *start(const char *request, char *error, size_t error_size) {
    char input[4096], outdir[4096], preset[64] = "", chosen[128] = "";
    if (!json_string(request, "input", input, sizeof input) || !json_string(request, "output_directory", outdir, sizeof outdir)) {
        snprintf(error, error_size, "invalid_settings: the request has no input or output_directory");
        return NULL;
    }
    // "handbrake-preset:NAME" among the required capabilities picks a HandBrake preset.
    const char *hp = strstr(request, "\"handbrake-preset:");
    if (hp) {
        hp += strlen("\"handbrake-preset:");
        size_t k = 0;
        while (*hp && *hp != '"' && k + 1 < sizeof chosen) { chosen[k++] = *hp == '_' ? ' ' : *hp; hp++; }
        chosen[k] = 0;
    }
    int named = json_string(request, "preset", preset, sizeof preset);
    if (!chosen[0]) {
        if (!named) {
            snprintf(error, error_size, "invalid_settings: the handbrake plugin takes a named preset (\"preset\") or a handbrake-preset:NAME capability");
            return NULL;
        }
        const char *mapped = handbrake_preset_for(preset);
        if (!mapped) {
            snprintf(error, error_size, "invalid_settings: the handbrake plugin has no HandBrake preset for %s", preset);
            return NULL;
        }
        snprintf(chosen, sizeof chosen, "%s", mapped);
    }
    if (mkdir(outdir, 0700) != 0) {
        snprintf(error, error_size, "io_error: cannot create %s: %s", outdir, strerror(errno));
        return NULL;
    }
    spool_plugin_job *job = calloc(1, sizeof *job);
    if (!job) { snprintf(error, error_size, "out of memory"); return NULL; }
    job->status = -1;
    job->progress = (spool_plugin_progress){ .fraction = -1, .fps = -1, .eta_seconds = -1, .speed = -1, .frames = 0 };
    const char *ext = strstr(chosen, "MKV") ? "mkv" : "mp4";
    snprintf(job->output, sizeof job->output, "%s/%s.%s", outdir, preset[0] ? preset : "handbrake", ext);

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) { snprintf(error, error_size, "io_error: pipe: %s", strerror(errno)); free(job); return NULL; }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(error, error_size, "handbrake_failed: cannot start HandBrakeCLI: %s", strerror(errno));
        close(fds[0]); close(fds[1]); free(job);
        return NULL;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(fds[1], 1);
        dup2(null, 2);
        // It dies with the worker, whatever ends the worker (the worker's process group,
        // which the engine signals, includes it too).
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *argv[] = { "HandBrakeCLI", "-i", input, "-o", job->output, "--preset", chosen, NULL };
        execv(HANDBRAKE, argv);
        _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    job->pid = pid;
    job->out = fds[0];
    return job;
}

// "Encoding: task 1 of 1, 12.34 % (45.67 fps, avg 40.00 fps, ETA 00h00m07s)"
static void parse_progress(spool_plugin_job *job, const char *line) {
    const char *e = strstr(line, "Encoding: task ");
    if (!e) return;
    int task = 0, tasks = 0;
    double percent = 0;
    if (sscanf(e, "Encoding: task %d of %d, %lf %%", &task, &tasks, &percent) != 3 || tasks <= 0) return;
    job->progress.fraction = ((task - 1) + percent / 100.0) / tasks;
    const char *f = strchr(e, '(');
    double fps;
    if (f && sscanf(f, "(%lf fps", &fps) == 1) job->progress.fps = fps;
    const char *eta = strstr(e, "ETA ");
    int h, m, s;
    if (eta && sscanf(eta, "ETA %dh%dm%ds", &h, &m, &s) == 3) job->progress.eta_seconds = h * 3600 + m * 60 + s;
}

static void drain(spool_plugin_job *job) {
    char chunk[4096];
    ssize_t n;
    while ((n = read(job->out, chunk, sizeof chunk)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            char c = chunk[i];
            if (c == '\r' || c == '\n') {
                job->buffer[job->used] = 0;
                parse_progress(job, job->buffer);
                job->used = 0;
            } else if (job->used + 1 < sizeof job->buffer) {
                job->buffer[job->used++] = c;
            }
        }
    }
}

static int poll_job(spool_plugin_job *job, int timeout_ms, spool_plugin_progress *progress, char *message, size_t size) {
    message[0] = 0;
    if (job->status < 0) {
        struct pollfd p = { .fd = job->out, .events = POLLIN };
        poll(&p, 1, timeout_ms);
        drain(job);
        if (job->cancelled_at > 0 && now_seconds() - job->cancelled_at > KILL_GRACE_SECONDS) kill(job->pid, SIGKILL);
        int status;
        if (waitpid(job->pid, &status, WNOHANG) == job->pid) job->status = status;
    }
    *progress = job->progress;
    if (job->status < 0) return SPOOL_PLUGIN_RUNNING;
    if (job->cancelled_at > 0) { snprintf(message, size, "cancelled: cancelled"); return SPOOL_PLUGIN_FAILED; }
    struct stat st;
    if (WIFEXITED(job->status) && WEXITSTATUS(job->status) == 0 && stat(job->output, &st) == 0 && st.st_size > 0) {
        snprintf(message, size, "{\"work\":0}");
        return SPOOL_PLUGIN_DONE;
    }
    unlink(job->output);
    if (WIFSIGNALED(job->status)) snprintf(message, size, "handbrake_failed: HandBrakeCLI was killed by signal %d", WTERMSIG(job->status));
    else if (WEXITSTATUS(job->status) == 127) snprintf(message, size, "handbrake_failed: HandBrakeCLI could not be started");
    else snprintf(message, size, "handbrake_failed: HandBrakeCLI exited with status %d without an output", WEXITSTATUS(job->status));
    return SPOOL_PLUGIN_FAILED;
}

static void cancel(spool_plugin_job *job) {
    if (job->status < 0 && job->cancelled_at == 0) {
        job->cancelled_at = now_seconds();
        kill(job->pid, SIGTERM);
    }
}

static void free_job(spool_plugin_job *job) {
    if (!job) return;
    if (job->status < 0) {
        kill(job->pid, SIGKILL);
        while (waitpid(job->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    close(job->out);
    free(job);
}

static const spool_plugin table = {
    .abi_version = SPOOL_PLUGIN_ABI_VERSION,
    .name = "handbrake",
    .capabilities_json = capabilities_json,
    .start = start,
    .poll = poll_job,
    .cancel = cancel,
    .free_job = free_job,
};

const spool_plugin *spool_plugin_entry(void) { return &table; }
