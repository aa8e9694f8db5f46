"""Runs calls of the official Python `pusher` SDK against a tidings server.

Usage: sdk.py '{"port": 6001, "app_id": "1", "key": "...", "secret": "...",
                "calls": [["trigger", {"channels": "c", "event_name": "e", "data": {}}], ...]}'

Prints a JSON list with one entry per call: {"ok": result} or
{"error": "PusherBadAuth", "message": "..."}. The Node tests drive it.
"""

import json
import sys

import pusher
import pusher.errors


def main():
    spec = json.loads(sys.argv[1])
    client = pusher.Pusher(
        app_id=spec["app_id"],
        key=spec["key"],
        secret=spec["secret"],
        host="127.0.0.1",
        port=int(spec["port"]),
        ssl=False,
        timeout=10,
    )
    results = []
    for method, kwargs in spec["calls"]:
        try:
            results.append({"ok": getattr(client, method)(**kwargs)})
        except pusher.errors.PusherError as e:
            results.append({"error": type(e).__name__, "message": str(e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
