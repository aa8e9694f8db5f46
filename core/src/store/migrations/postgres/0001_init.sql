-- Conversations are interned: messages carry a small integer, not the text id.
-- Only the key and member columns are indexed, and every append rewrites the
-- row (last_seq, last_at): the fillfactor leaves room for HOT updates.
-- Appends lock a conversation's row, which keeps seqs gap-free across nodes.
CREATE TABLE conversations (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key      TEXT   NOT NULL UNIQUE,
    user_lo  TEXT   NOT NULL,
    user_hi  TEXT   NOT NULL,
    last_seq BIGINT NOT NULL DEFAULT 0,
    last_at  BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
CREATE INDEX conversations_user_lo ON conversations (user_lo);
CREATE INDEX conversations_user_hi ON conversations (user_hi);

-- Ids come from one sequence (CACHE 1) taken while the conversation row is
-- locked, so within a conversation id order is seq order and commit order.
-- Timestamps are milliseconds since the Unix epoch.
CREATE TABLE messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation  BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    sender        TEXT   NOT NULL,
    body          TEXT   NOT NULL,
    client_msg_id TEXT,
    created_at    BIGINT NOT NULL,
    edited_at     BIGINT,
    deleted_at    BIGINT
);
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation, seq);
CREATE UNIQUE INDEX messages_client_msg_id ON messages (conversation, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

-- Listed by user id, bytewise (COLLATE "C"), like SQLite's BINARY order.
CREATE TABLE reactions (
    message    BIGINT NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    emoji      TEXT   NOT NULL,
    created_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (message, user_id)
);

CREATE TABLE read_state (
    conversation BIGINT NOT NULL,
    user_id      TEXT   NOT NULL,
    seq          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation, user_id)
);

-- One row per event awaiting delivery. A `new-message` row points at its
-- message (payload NULL, built when claimed); other events carry their payload.
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation BIGINT  NOT NULL,
    event        TEXT    NOT NULL,
    message      BIGINT,
    payload      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);

-- Search has no index: it runs to_tsvector over the user's conversations'
-- messages when asked, so sends never pay for it.
