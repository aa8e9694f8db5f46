/* The broker started in process: its address and app, its engine's sends
 * reaching an event stream, and a clean stop. argv[1] is a scratch dir. */
#include "check.h"

static const char *NO_NEEDLE = NULL;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: server SCRATCH_DIR\n");
        return 2;
    }
    char config[1024];
    snprintf(config, sizeof config,
             "{\"listen\":\"127.0.0.1:0\",\"store\":\"memory:\",\"data_dir\":\"%s\","
             "\"apps\":[{\"id\":\"1\",\"key\":\"test-key\",\"secret\":\"test-secret-0123456789abcdef0123456789\"}]}",
             argv[1]);
    tidings_server *server = NULL;
    char *address = NULL;
    EXPECT(TIDINGS_STATUS_INVALID_JSON, NO_NEEDLE,
           tidings_server_start("{", &server, &address, &err));
    EXPECT(TIDINGS_STATUS_CONFIG, "lisen",
           tidings_server_start("{\"lisen\":\"x\"}", &server, &address, &err));
    EXPECT(TIDINGS_STATUS_CONFIG, "listen",
           tidings_server_start("{\"listen\":\"nowhere\"}", &server, &address, &err));
    EXPECT(TIDINGS_STATUS_CONFIG, "at least 32",
           tidings_server_start("{\"listen\":\"127.0.0.1:0\",\"store\":\"memory:\","
                                "\"apps\":[{\"id\":\"7\",\"key\":\"k\",\"secret\":\"short-secret\"}]}",
                                &server, &address, &err));
    EXPECT(TIDINGS_STATUS_CONFIG, "demo mode",
           tidings_server_start("{\"listen\":\"127.0.0.1:0\",\"store\":\"memory:\",\"demo\":true,"
                                "\"allowed_origins\":[\"*\"],\"apps\":[{\"id\":\"7\",\"key\":\"k\","
                                "\"secret\":\"test-secret-0123456789abcdef0123456789\"}]}",
                                &server, &address, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_start(config, &server, &address, &err));
    if (server == NULL) {
        return check_done("server");
    }
    CHECK(check_contains(address, "127.0.0.1:"));
    char *info = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_info(server, &info, &err));
    CHECK(check_contains(info, "\"key\":\"test-key\""));
    CHECK(check_contains(info, "\"running\":true"));
    CHECK(check_contains(info, address));
    tidings_string_free(info);

    tidings_engine *engine = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_engine(server, &engine, &err));
    tidings_events *events = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_new(engine, &events, &err));
    char *sent = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"18\",\"body\":\"via server\"}",
                               &sent, &err));
    tidings_string_free(sent);
    char *json = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_events_next(events, 5000, &json, &err));
    CHECK(check_contains(json, "\"channel\":\"private-conversation-1-18\""));
    tidings_string_free(json);

    /* Freeing the engine handle leaves the server's engine running. */
    tidings_engine_free(engine);
    engine = NULL;
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_engine(server, &engine, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE,
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"18\",\"body\":\"still\"}", &sent,
                               &err));
    tidings_string_free(sent);

    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_stop(server, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_stop(server, &err));
    EXPECT(TIDINGS_STATUS_OK, NO_NEEDLE, tidings_server_info(server, &info, &err));
    CHECK(check_contains(info, "\"running\":false"));
    tidings_string_free(info);
    EXPECT(TIDINGS_STATUS_SHUT_DOWN, NO_NEEDLE,
           tidings_engine_send(engine, "{\"from\":\"1\",\"to\":\"18\",\"body\":\"late\"}", &sent,
                               &err));
    tidings_events_free(events);
    tidings_engine_free(engine);
    tidings_server_free(server);
    tidings_string_free(address);
    return check_done("server");
}
