/*
 * tidings_plugin.h: the tidings plugin ABI, version 1.0.
 *
 * A plugin is a shared library (.so, .dylib, .dll) exporting one function:
 *
 *     const tidings_plugin_v1 *tidings_plugin_entry(void);
 *
 * which returns a pointer to a static descriptor. The host (the tidings
 * engine) checks the descriptor's ABI version, calls `init` once with the
 * plugin's configuration, then calls the hooks, and `deinit` last.
 *
 * Hand-written; the Rust mirror is `plugins/api/src/abi.rs` (crate
 * `tidings-plugin`) and `plugins/api/tests/header.rs` checks every size and
 * offset against this file. Change both together.
 *
 * VERSIONING
 *   - `abi_major` must equal the host's TIDINGS_PLUGIN_ABI_MAJOR, or the
 *     plugin is refused with an error naming the file and both versions.
 *   - Any `abi_minor` loads. A new minor only adds fields at the END of a
 *     struct; each side reads only the fields inside the other side's
 *     `struct_size` and treats missing fields as NULL.
 *   - NULL hooks are absent: the host skips them.
 *
 * MEMORY: freed by the side that allocated it.
 *   - Strings the host passes in (`config_json`, `message_json`, `channel`,
 *     `event`, `data_json`) are UTF-8, NUL-terminated, and borrowed for the
 *     duration of the call only. Copy what you keep.
 *   - Strings the plugin hands out through out-parameters (`*error_out`,
 *     `*rewritten_json_out`, `*reason_out`) are allocated by the plugin and
 *     released by the host with the plugin's `free_string`. Out-parameters
 *     may be NULL; leave them untouched when you have nothing to say.
 *   - The instance (`*instance_out`) belongs to the plugin; the host passes
 *     it back to every hook and releases it only by calling `deinit`.
 *   - The descriptor, `name` and `version` are static. The host keeps the
 *     library loaded until after `deinit` returns.
 *   - The host API table passed to `init` stays valid until `deinit`
 *     returns; strings passed to its functions are borrowed for the call.
 *
 * THREADS
 *   Hooks may be called concurrently from several host threads (never
 *   the host's async worker threads), so the instance must be thread-safe.
 *   `init` happens before, and `deinit` after, every other call. Hooks
 *   should return quickly: a send waits for every `before_send`.
 *
 * FAILURE
 *   A hook returning TIDINGS_PLUGIN_ERROR is logged and treated as absent
 *   for that call (the message goes on; an event is still delivered), except
 *   `deliver`, whose error leaves the event pending, to be retried. A hook
 *   returning TIDINGS_PLUGIN_PANIC disables the plugin for good. A failing
 *   `init` refuses to start the engine (unless the plugin is optional).
 */
#ifndef TIDINGS_PLUGIN_H
#define TIDINGS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIDINGS_PLUGIN_ABI_MAJOR 1
#define TIDINGS_PLUGIN_ABI_MINOR 0
#define TIDINGS_PLUGIN_ENTRY_SYMBOL "tidings_plugin_entry"

/* What a hook returns. */
typedef int32_t tidings_plugin_status;
/* Done; from before_send: let the message through unchanged. */
#define TIDINGS_PLUGIN_OK 0
/* before_send only: store *rewritten_json_out (a message document whose
 * `body` may differ; every other field must stay as it was). */
#define TIDINGS_PLUGIN_REWRITE 1
/* before_send only: refuse the message; *reason_out tells the sender why. */
#define TIDINGS_PLUGIN_REJECT 2
/* The hook failed; *error_out (or *reason_out for before_send) may say why. */
#define TIDINGS_PLUGIN_ERROR 100
/* The plugin is broken (a Rust panic was caught): the host disables it.
 * *reason_out (before_send) or *error_out (deliver) may say why. */
#define TIDINGS_PLUGIN_PANIC 101

/* Log levels of tidings_host_api_v1.log. */
typedef int32_t tidings_log_level;
#define TIDINGS_LOG_ERROR 1
#define TIDINGS_LOG_WARN 2
#define TIDINGS_LOG_INFO 3
#define TIDINGS_LOG_DEBUG 4
#define TIDINGS_LOG_TRACE 5

/* What the host offers a plugin. Thread-safe. */
typedef struct tidings_host_api_v1 {
  uint32_t abi_major;
  uint32_t abi_minor;
  /* sizeof(tidings_host_api_v1) as the host was built. */
  size_t struct_size;
  /* Pass it back as the first argument of the functions below. */
  void *host_ctx;
  /* Writes `message` to the host's log. */
  void (*log)(void *host_ctx, tidings_log_level level, const char *message);
  /* Hands an ephemeral event (never stored, not seen by on_event) to the
   * engine's transports. `data_json` must be JSON. Returns
   * TIDINGS_PLUGIN_OK, or TIDINGS_PLUGIN_ERROR (bad arguments, queue full,
   * engine stopped). */
  tidings_plugin_status (*publish)(void *host_ctx, const char *channel,
                                   const char *event, const char *data_json);
} tidings_host_api_v1;

/* Builds the plugin's instance from its configuration (a JSON document, "{}"
 * when none was given). On success: *instance_out = the instance (may be
 * NULL), return TIDINGS_PLUGIN_OK. On failure: *error_out = why, return
 * TIDINGS_PLUGIN_ERROR. */
typedef tidings_plugin_status (*tidings_plugin_init_fn)(
    const tidings_host_api_v1 *host, const char *config_json,
    void **instance_out, char **error_out);

/* The last call: releases the instance. */
typedef void (*tidings_plugin_deinit_fn)(void *instance);

/* Called for each message after validation, before it is stored.
 * `message_json`: {"conversation_id","sender_id","recipient_id","body",
 * "client_msg_id","created_at"} (more fields may come).
 * Returns TIDINGS_PLUGIN_OK (allow), TIDINGS_PLUGIN_REWRITE with
 * *rewritten_json_out, TIDINGS_PLUGIN_REJECT with *reason_out, or
 * TIDINGS_PLUGIN_ERROR with an optional description in *reason_out. */
typedef tidings_plugin_status (*tidings_plugin_before_send_fn)(
    void *instance, const char *message_json, char **rewritten_json_out,
    char **reason_out);

/* Called once a message is stored (not for a retry of a stored one), with
 * the stored message: {"id","conversation_id","seq","sender_id","body",...}. */
typedef tidings_plugin_status (*tidings_plugin_after_send_fn)(
    void *instance, const char *message_json);

/* Called for every event the engine delivered (`new-message`,
 * `messages-read`, `typing`, ...), at least once; `data_json` is its JSON. */
typedef tidings_plugin_status (*tidings_plugin_on_event_fn)(
    void *instance, const char *channel, const char *event,
    const char *data_json);

/* The plugin as a transport: carries one event. TIDINGS_PLUGIN_ERROR (with
 * *error_out) leaves the event pending, to be retried. */
typedef tidings_plugin_status (*tidings_plugin_deliver_fn)(
    void *instance, const char *channel, const char *event,
    const char *data_json, char **error_out);

/* Releases a string the plugin handed out. NULL is a no-op. */
typedef void (*tidings_plugin_free_string_fn)(char *s);

/* The static descriptor tidings_plugin_entry returns. */
typedef struct tidings_plugin_v1 {
  uint32_t abi_major;   /* TIDINGS_PLUGIN_ABI_MAJOR */
  uint32_t abi_minor;   /* TIDINGS_PLUGIN_ABI_MINOR */
  size_t struct_size;   /* sizeof(tidings_plugin_v1) */
  const char *name;     /* static UTF-8, e.g. "audit-log" */
  const char *version;  /* static UTF-8, the plugin's own version */
  tidings_plugin_init_fn init;
  tidings_plugin_deinit_fn deinit;
  tidings_plugin_before_send_fn before_send;
  tidings_plugin_after_send_fn after_send;
  tidings_plugin_on_event_fn on_event;
  tidings_plugin_deliver_fn deliver;         /* NULL: not a transport */
  tidings_plugin_free_string_fn free_string; /* required if strings go out */
} tidings_plugin_v1;

/* The one symbol a plugin exports. */
typedef const tidings_plugin_v1 *(*tidings_plugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TIDINGS_PLUGIN_H */
