/* bus/bus.h — Redis on the libuv loop (hiredis async + its libuv adapter).
 *
 * Two connections per engine process: one SUBSCRIBEd to the event channel (one subscription
 * per process, never one per WebSocket), one for commands (PUBLISH, caches, counters). A lost
 * connection is retried with backoff (100 ms doubling to 5 s); while down, publishes are
 * dropped (events are durable in PostgreSQL; subscribers catch up from there) and commands
 * complete at once with an error. on_reconnect fires after the subscription is back, so the
 * WebSocket layer can re-read from PostgreSQL whatever it may have missed.
 *
 * Payloads are binary-safe; callbacks run on the loop; a reply is valid only during its callback. */
#ifndef X4_BUS_BUS_H
#define X4_BUS_BUS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

typedef struct x4_bus x4_bus;
typedef void (*x4_bus_msg_cb)(const char *channel, const char *payload, size_t len, void *ud);
typedef void (*x4_bus_event_cb)(void *ud);
typedef void (*x4_bus_reply_cb)(redisReply *reply, const char *err, void *ud);

/* url: redis://[:password@]host:port[/db] or unix:///path/to/redis.sock */
int x4_bus_open(x4_bus **out, uv_loop_t *loop, const char *url, char *err, size_t errlen);
/* Subscribes the process to one channel (call once per channel at start-up; resubscribed after
 * every reconnect). */
int x4_bus_subscribe(x4_bus *bus, const char *channel, x4_bus_msg_cb cb, void *ud);
void x4_bus_on_reconnect(x4_bus *bus, x4_bus_event_cb cb, void *ud);
void x4_bus_publish(x4_bus *bus, const char *channel, const char *payload, size_t len);
/* A command with argv/argvlen (binary-safe). cb may be NULL. */
void x4_bus_command(x4_bus *bus, int argc, const char **argv, const size_t *argvlen, x4_bus_reply_cb cb, void *ud);
int x4_bus_healthy(const x4_bus *bus); /* both connections up */
void x4_bus_close(x4_bus *bus);

/* Counters since open: publishes handed to Redis, publishes dropped while the command
 * connection was down, messages delivered to subscribers, and connections re-established
 * after a loss (the subscriber and the command connection count separately). */
typedef struct {
    unsigned long long published, dropped, received, reconnects;
} x4_bus_stats;
void x4_bus_get_stats(const x4_bus *bus, x4_bus_stats *out);

#endif
