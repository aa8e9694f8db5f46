-- Conversations are interned: messages carry a small integer, not the text id.
-- Only the member columns are indexed, so a send never rewrites an index of
-- this table (last_seq and last_at change with every batch).
CREATE TABLE conversations (
    id        INTEGER PRIMARY KEY,
    key       TEXT    NOT NULL UNIQUE,
    user_lo   TEXT    NOT NULL,
    user_hi   TEXT    NOT NULL,
    last_seq  INTEGER NOT NULL DEFAULT 0,
    last_at   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_user_lo ON conversations (user_lo);
CREATE INDEX conversations_user_hi ON conversations (user_hi);

-- Message ids grow in commit order, so within a conversation id order is seq order.
CREATE TABLE messages (
    id            INTEGER PRIMARY KEY,
    conversation  INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    sender        TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    client_msg_id TEXT,
    created_at    INTEGER NOT NULL,
    edited_at     INTEGER,
    deleted_at    INTEGER
);
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation, seq);
CREATE UNIQUE INDEX messages_client_msg_id ON messages (conversation, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE reactions (
    message    INTEGER NOT NULL,
    user_id    TEXT    NOT NULL,
    emoji      TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message, user_id)
) WITHOUT ROWID;

CREATE TABLE read_state (
    conversation INTEGER NOT NULL,
    user_id      TEXT    NOT NULL,
    seq          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation, user_id)
) WITHOUT ROWID;

-- One row per event awaiting delivery. A `new-message` row points at its
-- message (payload NULL, built when claimed); other events carry their payload.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    conversation INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    message      INTEGER,
    payload      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);

-- Full-text index, kept off the send path: messages are indexed in bulk
-- up to search_progress.indexed_upto when a search runs.
CREATE VIRTUAL TABLE search_index USING fts5(
    body, content = '', contentless_delete = 1,
    tokenize = "unicode61 remove_diacritics 0"
);
CREATE TABLE search_progress (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_upto INTEGER NOT NULL DEFAULT 0
);
INSERT INTO search_progress (id, indexed_upto) VALUES (1, 0);
