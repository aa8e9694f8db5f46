#!/usr/bin/env python3
"""A short tidings session from Python: a reader thread prints events while
two users talk, then the history is printed newest first.

    python examples/python-script/chat.py [STORE_URL]

STORE_URL defaults to "memory:"; try "sqlite://./tidings-data/example.db".
"""

import sys
import threading

import tidings


def main() -> None:
    store = sys.argv[1] if len(sys.argv) > 1 else "memory:"
    with tidings.Engine({"store": store}) as engine:
        conversation = tidings.conversation_id("1", "18")
        got_all = threading.Event()

        def on_event(event: tidings.Event) -> None:
            message = event.message
            if message is not None:
                print(f"event {event.event:<15} #{message.seq} {message.sender_id}: {message.body}")
            else:
                print(f"event {event.event:<15} {event.data}")
            if event.event == "messages-read":
                got_all.set()

        # Events sent after subscribe() returns are not missed.
        with engine.subscribe(on_event):
            engine.send("1", "18", "Hello teacher")
            engine.typing("18", conversation)
            reply = engine.send("18", "1", "Homework is due Friday").message
            engine.react("1", reply.id, "👍")
            engine.mark_read("1", conversation, reply.seq)
            if not got_all.wait(timeout=10):
                sys.exit("events did not arrive in time")

        print(f"\nhistory of {conversation}, newest first:")
        for message in engine.history(conversation, limit=10).items:
            reactions = " ".join(r.emoji for r in message.reactions)
            print(f"  #{message.seq} {message.sender_id}: {message.body} {reactions}".rstrip())
        print(f"unread for 18: {engine.unread('18', conversation).unread_count}")

        try:
            engine.edit("18", 1, "not mine to edit")
        except tidings.Forbidden as err:
            print(f"as expected: {err}")


if __name__ == "__main__":
    main()
