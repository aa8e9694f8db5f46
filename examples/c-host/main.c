/* A C host embedding tidings through the static library: opens an engine,
 * listens for events, sends three messages between users 1 and 18, reads
 * the history back and waits for the `new-message` events.
 *
 *   c-host [STORE_URL]      (default: memory:)
 *
 * Exits 0 when every step worked, 1 (with the engine's message) otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tidings.h"

/* Reports a failed call with the engine's message and frees it. */
static int failed(const char *what, tidings_status status, char *error) {
    fprintf(stderr, "c-host: %s: %s (%s)\n", what, error ? error : "?",
            tidings_status_name((int)status));
    tidings_string_free(error);
    return 1;
}

/* Waits for `count` new-message events, printing each. */
static int await_new_messages(const tidings_events *events, int count) {
    int seen = 0;
    while (seen < count) {
        char *event = NULL, *error = NULL;
        tidings_status status = tidings_events_next(events, 10000, &event, &error);
        if (status == TIDINGS_STATUS_TIMEOUT) {
            fprintf(stderr, "c-host: no new-message event within 10 s (%d of %d)\n", seen, count);
            return 1;
        }
        if (status != TIDINGS_STATUS_OK) {
            return failed("tidings_events_next", status, error);
        }
        if (strstr(event, "\"event\":\"new-message\"") != NULL) {
            printf("event: %s\n", event);
            seen++;
        }
        tidings_string_free(event);
    }
    return 0;
}

int main(int argc, char **argv) {
    if ((tidings_abi_version() >> 16) != TIDINGS_ABI_VERSION_MAJOR) {
        fprintf(stderr, "c-host: built for C ABI %d, the library has %u\n",
                TIDINGS_ABI_VERSION_MAJOR, tidings_abi_version() >> 16);
        return 1;
    }
    const char *store = argc > 1 ? argv[1] : "memory:";
    char config[1024];
    if (snprintf(config, sizeof config, "{\"store\":\"%s\"}", store) >= (int)sizeof config) {
        fprintf(stderr, "c-host: store URL too long\n");
        return 1;
    }
    printf("tidings %s, C ABI %u.%u, store %s\n", tidings_version(),
           tidings_abi_version() >> 16, tidings_abi_version() & 0xffff, store);

    int rc = 1;
    char *error = NULL;
    tidings_engine *engine = NULL;
    tidings_events *events = NULL;
    tidings_status status = tidings_engine_new(config, &engine, &error);
    if (status != TIDINGS_STATUS_OK) {
        return failed("tidings_engine_new", status, error);
    }
    /* Subscribe before sending, so no event is missed. */
    status = tidings_events_new(engine, &events, &error);
    if (status != TIDINGS_STATUS_OK) {
        rc = failed("tidings_events_new", status, error);
        goto done;
    }

    const char *sends[] = {
        "{\"from\":\"1\",\"to\":\"18\",\"body\":\"Hello teacher\",\"client_msg_id\":\"c-host-1\"}",
        "{\"from\":\"18\",\"to\":\"1\",\"body\":\"Homework is due Friday\"}",
        "{\"from\":\"1\",\"to\":\"18\",\"body\":\"Thanks! \\u00e0 vendredi\"}",
    };
    for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
        char *sent = NULL;
        status = tidings_engine_send(engine, sends[i], &sent, &error);
        if (status != TIDINGS_STATUS_OK) {
            rc = failed("tidings_engine_send", status, error);
            goto done;
        }
        printf("sent: %s\n", sent);
        tidings_string_free(sent);
    }

    /* A bad request is an error status with a message, never a crash. */
    char *unsent = NULL;
    status = tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"18\",\"body\":\"   \"}", &unsent, &error);
    if (status != TIDINGS_STATUS_INVALID_ARGUMENT) {
        fprintf(stderr, "c-host: an empty body gave %s\n", tidings_status_name((int)status));
        tidings_string_free(error);
        goto done;
    }
    printf("refused as expected: %s\n", error);
    tidings_string_free(error);
    error = NULL;

    char *page = NULL;
    status = tidings_engine_history(engine, "1-18", 0, 50, &page, &error);
    if (status != TIDINGS_STATUS_OK) {
        rc = failed("tidings_engine_history", status, error);
        goto done;
    }
    printf("history: %s\n", page);
    int newest_first = strstr(page, "\"seq\":3") != NULL && strstr(page, "\"seq\":3") < strstr(page, "\"seq\":1");
    tidings_string_free(page);
    if (!newest_first) {
        fprintf(stderr, "c-host: history is not seq 3, 2, 1\n");
        goto done;
    }

    rc = await_new_messages(events, 3);
    if (rc == 0) {
        printf("ok\n");
    }

done:
    tidings_events_free(events);
    tidings_engine_free(engine);
    return rc;
}
