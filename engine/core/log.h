/* core/log.h — the engine's one logger.
 *
 * Lines go to stderr as `ISO-time level module: message`. Nothing secret is ever passed here:
 * API keys, the escrow secret and access tokens are redacted by their owners before logging.
 * x4_log_set_level() takes "debug", "info", "warn" or "error" (env LOG_LEVEL). */
#ifndef X4_CORE_LOG_H
#define X4_CORE_LOG_H

typedef enum { X4_LOG_DEBUG = 0, X4_LOG_INFO, X4_LOG_WARN, X4_LOG_ERROR } x4_log_level;

int x4_log_set_level(const char *name); /* -1 if the name is unknown */
int x4_log_enabled(x4_log_level lvl);
void x4_log(x4_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define x4_debug(mod, ...) x4_log(X4_LOG_DEBUG, mod, __VA_ARGS__)
#define x4_info(mod, ...) x4_log(X4_LOG_INFO, mod, __VA_ARGS__)
#define x4_warn(mod, ...) x4_log(X4_LOG_WARN, mod, __VA_ARGS__)
#define x4_error(mod, ...) x4_log(X4_LOG_ERROR, mod, __VA_ARGS__)

#endif
