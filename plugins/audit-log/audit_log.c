/*
 * audit-log: a tidings plugin in C. Appends every event the engine delivers
 * to a file, one JSON object per line:
 *
 *   {"ts":1718000000123,"channel":"private-conversation-1-18","event":"new-message","data":{...}}
 *
 * Config: {"path": "/var/log/tidings/audit.jsonl"}. The file is opened in
 * append mode by init (created when missing) and closed by deinit. Lines
 * are written whole under a mutex and flushed, so concurrent hooks and
 * crashes never leave half lines behind.
 *
 * Build: cc -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared \
 *          -I ../api/include -o libaudit_log.so audit_log.c -lpthread
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tidings_plugin.h"

typedef struct audit_log {
  FILE *file;
  pthread_mutex_t lock;
  const tidings_host_api_v1 *host;
  unsigned long long lines;
} audit_log;

/* A malloc'd formatted string, or NULL when out of memory. */
static char *format(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(NULL, 0, fmt, args);
  va_end(args);
  if (n < 0) return NULL;
  char *out = malloc((size_t)n + 1);
  if (!out) return NULL;
  va_start(args, fmt);
  vsnprintf(out, (size_t)n + 1, fmt, args);
  va_end(args);
  return out;
}

static void host_log(const tidings_host_api_v1 *host, tidings_log_level level,
                     const char *message) {
  /* Read `log` only when the host's table is large enough to hold it. */
  if (host && host->struct_size >= offsetof(tidings_host_api_v1, log) +
                                       sizeof(host->log) &&
      host->log) {
    host->log(host->host_ctx, level, message);
  }
}

/* Finds the string value of "key" at the top level of a small JSON object
 * and unescapes it into a malloc'd string. Returns NULL when absent or not a
 * string. Good enough for a config document; not a general JSON parser. */
static char *json_string_field(const char *json, const char *key) {
  size_t key_len = strlen(key);
  const char *p = json;
  int depth = 0;
  while (*p) {
    if (*p == '{' || *p == '[') {
      depth++;
      p++;
    } else if (*p == '}' || *p == ']') {
      depth--;
      p++;
    } else if (*p == '"') {
      const char *start = ++p;
      while (*p && *p != '"') p += (*p == '\\' && p[1]) ? 2 : 1;
      if (!*p) return NULL;
      size_t len = (size_t)(p - start);
      p++;
      const char *q = p;
      while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
      if (depth == 1 && *q == ':' && len == key_len &&
          strncmp(start, key, len) == 0) {
        q++;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        if (*q != '"') return NULL;
        q++;
        char *out = malloc(strlen(q) + 1);
        if (!out) return NULL;
        char *w = out;
        while (*q && *q != '"') {
          if (*q == '\\') {
            q++;
            switch (*q) {
              case 'n': *w++ = '\n'; break;
              case 't': *w++ = '\t'; break;
              case 'r': *w++ = '\r'; break;
              case 'b': *w++ = '\b'; break;
              case 'f': *w++ = '\f'; break;
              case '"': case '\\': case '/': *w++ = *q; break;
              default: free(out); return NULL; /* \uXXXX: not in paths we take */
            }
            q++;
          } else {
            *w++ = *q++;
          }
        }
        if (*q != '"') {
          free(out);
          return NULL;
        }
        *w = '\0';
        return out;
      }
    } else {
      p++;
    }
  }
  return NULL;
}

/* Writes `s` as a JSON string. */
static void write_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      default:
        if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
  }
  fputc('"', f);
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static tidings_plugin_status audit_init(const tidings_host_api_v1 *host,
                                        const char *config_json,
                                        void **instance_out, char **error_out) {
  char *path = json_string_field(config_json ? config_json : "{}", "path");
  if (!path || !*path) {
    free(path);
    if (error_out)
      *error_out = format("config %s has no \"path\" string: where should the audit log go?",
                          config_json ? config_json : "(none)");
    return TIDINGS_PLUGIN_ERROR;
  }
  FILE *file = fopen(path, "a");
  if (!file) {
    if (error_out) *error_out = format("cannot open %s for appending: %s", path, strerror(errno));
    free(path);
    return TIDINGS_PLUGIN_ERROR;
  }
  audit_log *log = calloc(1, sizeof *log);
  if (!log) {
    fclose(file);
    free(path);
    if (error_out) *error_out = format("out of memory");
    return TIDINGS_PLUGIN_ERROR;
  }
  log->file = file;
  log->host = host;
  pthread_mutex_init(&log->lock, NULL);
  char *hello = format("audit-log appends events to %s", path);
  if (hello) host_log(host, TIDINGS_LOG_INFO, hello);
  free(hello);
  free(path);
  *instance_out = log;
  return TIDINGS_PLUGIN_OK;
}

static void audit_deinit(void *instance) {
  audit_log *log = instance;
  if (!log) return;
  fclose(log->file);
  pthread_mutex_destroy(&log->lock);
  free(log);
}

static tidings_plugin_status audit_on_event(void *instance, const char *channel,
                                            const char *event,
                                            const char *data_json) {
  audit_log *log = instance;
  if (!log || !channel || !event || !data_json) return TIDINGS_PLUGIN_ERROR;
  pthread_mutex_lock(&log->lock);
  fprintf(log->file, "{\"ts\":%lld,\"channel\":", now_ms());
  write_json_string(log->file, channel);
  fputs(",\"event\":", log->file);
  write_json_string(log->file, event);
  fputs(",\"data\":", log->file);
  fputs(*data_json ? data_json : "null", log->file);
  fputs("}\n", log->file);
  int failed = fflush(log->file) != 0 || ferror(log->file);
  if (!failed) log->lines++;
  pthread_mutex_unlock(&log->lock);
  if (failed) {
    host_log(log->host, TIDINGS_LOG_WARN, "audit-log: writing the audit file failed");
    return TIDINGS_PLUGIN_ERROR;
  }
  return TIDINGS_PLUGIN_OK;
}

static void audit_free_string(char *s) { free(s); }

static const tidings_plugin_v1 descriptor = {
    .abi_major = TIDINGS_PLUGIN_ABI_MAJOR,
    .abi_minor = TIDINGS_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(tidings_plugin_v1),
    .name = "audit-log",
    .version = "1.0.0",
    .init = audit_init,
    .deinit = audit_deinit,
    .before_send = NULL, /* absent: messages pass untouched */
    .after_send = NULL,
    .on_event = audit_on_event,
    .deliver = NULL,
    .free_string = audit_free_string,
};

const tidings_plugin_v1 *tidings_plugin_entry(void);

const tidings_plugin_v1 *tidings_plugin_entry(void) { return &descriptor; }
