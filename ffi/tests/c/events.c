/* Events across threads: a reader thread sees a message sent from another,
 * close wakes a waiting reader, a slow reader gets one `lagged` event, and
 * a blocking call from the log callback is refused with REENTRANT. */
#include <pthread.h>
#include <time.h>

#include "check.h"

static const char *NO_NEEDLE = NULL;

struct reader {
    tidings_events *events;
    const char *wanted;
    int found;
    tidings_status last;
};

static void *read_until(void *arg) {
    struct reader *r = arg;
    for (int i = 0; i < 100 && !r->found; i++) {
        char *json = NULL;
        r->last = tidings_events_next(r->events, 5000, &json, NULL);
        if (r->last != TIDINGS_STATUS_OK) {
            break;
        }
        if (check_contains(json, r->wanted)) {
            r->found = 1;
        }
        tidings_string_free(json);
    }
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reader_sees_send(tidings_engine *engine) {
    struct reader r = {NULL, "\"body\":\"from another thread\"", 0, TIDINGS_STATUS_OK};
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_new(engine, &r.events, &err));
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, read_until, &r) == 0);
    char *sent = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_send(engine,
                               "{\"from\":\"7\",\"to\":\"8\",\"body\":\"from another thread\"}",
                               &sent, &err));
    tidings_string_free(sent);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(r.found);
    tidings_events_free(r.events);
}

static void close_wakes_reader(tidings_engine *engine) {
    struct reader r = {NULL, "never", 0, TIDINGS_STATUS_OK};
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_new(engine, &r.events, &err));
    pthread_t thread;
    double start = now_s();
    CHECK(pthread_create(&thread, NULL, read_until, &r) == 0);
    tidings_events_close(r.events);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(r.last == TIDINGS_STATUS_CLOSED);
    CHECK(now_s() - start < 4.0);
    tidings_events_free(r.events);
}

static void slow_reader_lags(void) {
    tidings_engine *engine = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_new("{\"store\":\"memory:\",\"event_capacity\":2}", &engine, &err));
    tidings_events *events = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_new(engine, &events, &err));
    /* typing is delivered before the call returns: five are queued now. */
    for (int i = 0; i < 5; i++) {
        EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_engine_typing(engine, "1", "1-2", &err));
    }
    char *json = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_next(events, 1000, &json, &err));
    CHECK(check_contains(json, "\"event\":\"lagged\""));
    CHECK(check_contains(json, "\"dropped\":3"));
    tidings_string_free(json);
    for (int i = 0; i < 2; i++) {
        json = NULL;
        EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_next(events, 1000, &json, &err));
        CHECK(check_contains(json, "\"event\":\"typing\""));
        tidings_string_free(json);
    }
    EXPECT(TIDINGS_STATUS_TIMEOUT, NO_NEEDLE, tidings_events_next(events, 0, &json, &err));
    tidings_events_free(events);
    tidings_engine_free(engine);
}

static int log_lines = 0;
static tidings_status reentrant_status = TIDINGS_STATUS_OK;
static int userdata_freed = 0;

static void on_log(void *userdata, tidings_log_level level, const char *target,
                   const char *message) {
    (void)level;
    (void)target;
    (void)message;
    CHECK(userdata == (void *)&log_lines);
    log_lines++;
    tidings_engine *engine = NULL;
    reentrant_status = tidings_engine_new("{\"store\":\"memory:\"}", &engine, NULL);
    tidings_engine_free(engine);
}

static void free_userdata(void *userdata) {
    CHECK(userdata == (void *)&log_lines);
    userdata_freed++;
}

static void log_callback_is_not_reentrant(void) {
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_log_set_callback(on_log, TIDINGS_LOG_LEVEL_DEBUG, &log_lines, free_userdata,
                                    &err));
    tidings_engine *engine = NULL;
    /* Opening an engine logs one debug line. */
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_new("{\"store\":\"memory:\"}", &engine, &err));
    CHECK(log_lines >= 1);
    CHECK(reentrant_status == TIDINGS_STATUS_REENTRANT);
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_log_set_callback(NULL, 0, NULL, NULL, &err));
    CHECK(userdata_freed == 1);
    tidings_engine_free(engine);
}

int main(void) {
    tidings_engine *engine = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_new("{\"store\":\"memory:\"}", &engine, &err));
    if (engine == NULL) {
        return check_done("events");
    }
    reader_sees_send(engine);
    close_wakes_reader(engine);
    slow_reader_lags();
    log_callback_is_not_reentrant();
    tidings_engine_free(engine);
    return check_done("events");
}
