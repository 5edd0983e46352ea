// Test plugins for PluginTests, built at test time with cc -shared (never part of the
// product), one variant per -D:
//   GOOD       writes out/plugin.txt, reports progress 0.5, ends DONE {"work":7}
//   SPAWN      like GOOD, but the file is written by /bin/sh, a program it starts
//   SEGV_START segfaults in start
//   FAIL       ends FAILED "invalid_data: the plugin did not like it"
//   ABI99      a table of ABI version 99
//   NO_ENTRY   no spool_plugin_entry symbol
//   NO_POLL    a table without poll
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "spool_plugin.h"

struct spool_plugin_job { int polls; char out[4096]; };

static const char *caps(void) { return "{\"capabilities\":[\"" PLUGIN_NAME "\"],\"note\":\"test\"}"; }

static spool_plugin_job *start(const char *request, char *error, size_t size) {
#ifdef SEGV_START
    volatile int *null = NULL;
    *null = 1;
#endif
    spool_plugin_job *job = calloc(1, sizeof *job);
    const char *p = strstr(request, "\"output_directory\":\"");
    if (!p) { snprintf(error, size, "no output_directory"); free(job); return NULL; }
    p += strlen("\"output_directory\":\"");
    size_t n = strcspn(p, "\"");
    memcpy(job->out, p, n < sizeof job->out ? n : sizeof job->out - 1);
    if (mkdir(job->out, 0700) != 0) { snprintf(error, size, "io_error: mkdir %s: %s", job->out, strerror(errno)); free(job); return NULL; }
    return job;
}

static int poll_job(spool_plugin_job *job, int ms, spool_plugin_progress *progress, char *message, size_t size) {
    (void)ms;
    job->polls++;
    if (job->polls == 1) {
        *progress = (spool_plugin_progress){ .fraction = 0.5, .fps = 10, .eta_seconds = 1, .speed = 2, .frames = 5 };
        return SPOOL_PLUGIN_RUNNING;
    }
#ifdef FAIL
    snprintf(message, size, "invalid_data: the plugin did not like it");
    return SPOOL_PLUGIN_FAILED;
#else
    char path[4200];
    snprintf(path, sizeof path, "%s/plugin.txt", job->out);
#ifdef SPAWN
    pid_t pid = fork();
    if (pid < 0) { snprintf(message, size, "spawn_refused: fork: %s", strerror(errno)); return SPOOL_PLUGIN_FAILED; }
    if (pid == 0) { execl("/bin/sh", "sh", "-c", "echo made by a program > \"$0\"", path, (char *)NULL); _exit(127); }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) { snprintf(message, size, "spawn_failed: status %d", status); return SPOOL_PLUGIN_FAILED; }
#else
    FILE *f = fopen(path, "w");
    if (!f) { snprintf(message, size, "io_error: %s", strerror(errno)); return SPOOL_PLUGIN_FAILED; }
    fputs("made by a plugin\n", f);
    fclose(f);
#endif
    snprintf(message, size, "{\"work\":7}");
    return SPOOL_PLUGIN_DONE;
#endif
}

static void cancel(spool_plugin_job *job) { (void)job; }
static void free_job(spool_plugin_job *job) { free(job); }

static const spool_plugin table = {
#ifdef ABI99
    .abi_version = 99,
#else
    .abi_version = SPOOL_PLUGIN_ABI_VERSION,
#endif
    .name = PLUGIN_NAME,
    .capabilities_json = caps,
    .start = start,
#ifndef NO_POLL
    .poll = poll_job,
#endif
    .cancel = cancel,
    .free_job = free_job,
};

#ifndef NO_ENTRY
const spool_plugin *spool_plugin_entry(void) { return &table; }
#else
const spool_plugin *some_other_symbol(void) { return &table; }
#endif
