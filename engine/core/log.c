/* core/log.c — see log.h. One fprintf per line so concurrent processes do not interleave. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static x4_log_level g_level = X4_LOG_INFO;
static const char *const g_names[] = {"debug", "info", "warn", "error"};

int x4_log_set_level(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, g_names[i]) == 0) {
            g_level = (x4_log_level)i;
            return 0;
        }
    return -1;
}

int x4_log_enabled(x4_log_level lvl) { return lvl >= g_level; }

void x4_log(x4_log_level lvl, const char *module, const char *fmt, ...) {
    if (lvl < g_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %-5s %s: %s\n", ts, (long)(tv.tv_usec / 1000), g_names[lvl], module, msg);
}
