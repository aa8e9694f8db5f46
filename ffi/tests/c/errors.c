/* Status codes and messages for NULL arguments, bad UTF-8, bad JSON, engine
 * errors, closed streams and shut-down engines. */
#include "check.h"

static const char *NO_NEEDLE = NULL;

static void misc(void) {
    CHECK(tidings_abi_version() >> 16 == TIDINGS_ABI_VERSION_MAJOR);
    CHECK(tidings_abi_version() == TIDINGS_ABI_VERSION);
    CHECK(strlen(tidings_version()) > 0);
    CHECK(strcmp(tidings_status_name(TIDINGS_STATUS_OK), "ok") == 0);
    CHECK(strcmp(tidings_status_name(TIDINGS_STATUS_NOT_FOUND), "not_found") == 0);
    CHECK(strcmp(tidings_status_name(12345), "unknown") == 0);
    CHECK(TIDINGS_STATUS_TIMEOUT == 1 && TIDINGS_STATUS_CLOSED == 2);
    CHECK(TIDINGS_STATUS_NULL_ARGUMENT == 100 && TIDINGS_STATUS_PANIC == 104);
    tidings_string_free(NULL);
    tidings_engine_free(NULL);
    tidings_events_free(NULL);
    tidings_events_close(NULL);
    tidings_server_free(NULL);
}

static void engine_new_errors(void) {
    tidings_engine *engine = (tidings_engine *)0x1; /* must stay untouched */
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "config_json",
           tidings_engine_new(NULL, &engine, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "engine_out",
           tidings_engine_new("{}", NULL, &err));
    EXPECT(TIDINGS_STATUS_INVALID_UTF8, "config_json",
           tidings_engine_new("{\"store\":\"\xff\"}", &engine, &err));
    EXPECT(TIDINGS_STATUS_INVALID_JSON, "config_json",
           tidings_engine_new("{\"store\":", &engine, &err));
    EXPECT(TIDINGS_STATUS_CONFIG, "stor",
           tidings_engine_new("{\"stor\":\"memory:\"}", &engine, &err));
    EXPECT(TIDINGS_STATUS_CONFIG, NO_NEEDLE,
           tidings_engine_new("{\"store\":\"nosuchscheme://x\"}", &engine, &err));
    CHECK(engine == (tidings_engine *)0x1);
    /* error_out may be NULL. */
    CHECK(tidings_engine_new(NULL, &engine, NULL) == TIDINGS_STATUS_NULL_ARGUMENT);
}

static void engine_call_errors(tidings_engine *engine) {
    char *json = (char *)0x1;
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "engine",
           tidings_engine_send(NULL, "{}", &json, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "request_json",
           tidings_engine_send(engine, NULL, &json, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "sent_json_out",
           tidings_engine_send(engine, "{}", NULL, &err));
    EXPECT(TIDINGS_STATUS_INVALID_JSON, "request_json",
           tidings_engine_send(engine, "{\"from\": 1,", &json, &err));
    EXPECT(TIDINGS_STATUS_INVALID_UTF8, "request_json",
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"2\",\"body\":\"\xc3\x28\"}",
                               &json, &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "bdy",
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"2\",\"bdy\":\"x\"}", &json,
                               &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "empty",
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"2\",\"body\":\"  \"}", &json,
                               &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "a b",
           tidings_engine_send(engine, "{\"from\":\"a b\",\"to\":\"2\",\"body\":\"x\"}", &json,
                               &err));
    EXPECT(TIDINGS_STATUS_FORBIDDEN, "not in conversation",
           tidings_engine_send(engine,
                               "{\"from\":\"3\",\"conversation_id\":\"1-2\",\"body\":\"x\"}",
                               &json, &err));
    EXPECT(TIDINGS_STATUS_NOT_FOUND, "999999",
           tidings_engine_message(engine, 999999, &json, &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "conversation id",
           tidings_engine_history(engine, "2-1", 0, 10, &json, &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "limit",
           tidings_engine_history(engine, "1-2", 0, 0, &json, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "conversation_id",
           tidings_engine_history(engine, NULL, 0, 10, &json, &err));
    EXPECT(TIDINGS_STATUS_INVALID_UTF8, "user_id",
           tidings_engine_inbox(engine, "\xff", 10, &json, &err));
    EXPECT(TIDINGS_STATUS_FORBIDDEN, NO_NEEDLE,
           tidings_engine_mark_read(engine, "3", "1-2", 1, &json, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "emoji",
           tidings_engine_react(engine, "1", 1, NULL, &json, &err));
    CHECK(json == (char *)0x1);

    /* A message from 1 to 2 that 2 may not edit. */
    char *sent = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"2\",\"body\":\"hi\"}", &sent,
                               &err));
    CHECK(check_contains(sent, "\"seq\":1"));
    CHECK(check_contains(sent, "\"created\":true"));
    tidings_string_free(sent);
    EXPECT(TIDINGS_STATUS_FORBIDDEN, NO_NEEDLE,
           tidings_engine_edit(engine, "2", 1, "changed", &json, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, NO_NEEDLE,
           tidings_engine_typing(engine, NULL, "1-2", &err));
}

static void events_errors(void) {
    tidings_engine *engine = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_new("{\"store\":\"memory:\"}", &engine, &err));
    tidings_events *events = NULL;
    char *json = NULL;
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "engine", tidings_events_new(NULL, &events, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "events_out", tidings_events_new(engine, NULL, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_new(engine, &events, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "events", tidings_events_next(NULL, 0, &json, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "event_json_out",
           tidings_events_next(events, 0, NULL, &err));
    EXPECT(TIDINGS_STATUS_TIMEOUT, NO_NEEDLE, tidings_events_next(events, 0, &json, &err));
    EXPECT(TIDINGS_STATUS_TIMEOUT, NO_NEEDLE, tidings_events_next(events, 20, &json, &err));
    tidings_events_close(events);
    tidings_events_close(events);
    EXPECT(TIDINGS_STATUS_CLOSED, NO_NEEDLE, tidings_events_next(events, 1000, &json, &err));
    CHECK(json == NULL);
    tidings_events_free(events);
    tidings_engine_free(engine);
}

static void auth_errors(void) {
    char *out = NULL;
    /* The Pusher documentation's example. */
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_channel_auth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234",
                                "private-foobar", &out, &err));
    CHECK(out && strcmp(out,
                        "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369"
                        "f135bf843651c3a4") == 0);
    tidings_string_free(out);
    out = NULL;
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "socket_id",
           tidings_channel_auth("k", "secret", "1234:1", "private-x", &out, &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "channel",
           tidings_channel_auth("k", "secret", "1.1", "private x", &out, &err));
    EXPECT(TIDINGS_STATUS_INVALID_JSON, "channel_data",
           tidings_presence_auth("k", "secret", "1.1", "presence-x", "{", &out, &err));
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "user_data",
           tidings_user_auth("k", "secret", "1.1", "[1]", &out, &err));
    EXPECT(TIDINGS_STATUS_NULL_ARGUMENT, "app_secret",
           tidings_user_auth("k", NULL, "1.1", "{}", &out, &err));
    CHECK(out == NULL);

    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_conversation_of_channel("private-conversation-1-18", &out, &err));
    CHECK(check_contains(out, "\"members\":[\"1\",\"18\"]"));
    tidings_string_free(out);
    out = NULL;
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "not a conversation channel",
           tidings_conversation_of_channel("private-conversation-18-1", &out, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_conversation_id("18", "1", &out, &err));
    CHECK(out && strcmp(out, "1-18") == 0);
    tidings_string_free(out);
    out = NULL;

    char *token = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_token_mint("a-long-app-secret", "17", 60, &token, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_token_verify("a-long-app-secret", token, &out, &err));
    CHECK(check_contains(out, "\"user\":\"17\""));
    tidings_string_free(out);
    out = NULL;
    EXPECT(TIDINGS_STATUS_UNAUTHORIZED, "signature",
           tidings_token_verify("another-secret", token, &out, &err));
    EXPECT(TIDINGS_STATUS_UNAUTHORIZED, "malformed",
           tidings_token_verify("a-long-app-secret", "garbage", &out, &err));
    tidings_string_free(token);
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, NO_NEEDLE,
           tidings_token_mint("a-long-app-secret", "no spaces", 60, &token, &err));
}

static void log_errors(void) {
    EXPECT(TIDINGS_STATUS_INVALID_ARGUMENT, "max_level",
           tidings_log_set_callback(NULL, 9, NULL, NULL, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_log_set_callback(NULL, 0, NULL, NULL, &err));
}

static void shut_down(tidings_engine *engine) {
    char *json = NULL;
    tidings_events *events = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_new(engine, &events, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_engine_shutdown(engine, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_engine_shutdown(engine, &err));
    EXPECT(TIDINGS_STATUS_SHUT_DOWN, "shut down",
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"2\",\"body\":\"late\"}", &json,
                               &err));
    CHECK(json == NULL);
    tidings_engine_free(engine);
    /* The stream ends once its engine is gone. */
    tidings_status st;
    do {
        st = tidings_events_next(events, 2000, &json, NULL);
        if (st == TIDINGS_STATUS_OK) {
            tidings_string_free(json);
            json = NULL;
        }
    } while (st == TIDINGS_STATUS_OK);
    CHECK(st == TIDINGS_STATUS_CLOSED);
    tidings_events_free(events);
}

int main(void) {
    misc();
    engine_new_errors();
    tidings_engine *engine = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_engine_new("{\"store\":\"memory:\"}", &engine, &err));
    if (engine == NULL) {
        return check_done("errors");
    }
    engine_call_errors(engine);
    events_errors();
    auth_errors();
    log_errors();
    shut_down(engine);
    return check_done("errors");
}
