'use strict';
// A webhook receiver on 127.0.0.1 that records every request, checks it
// with the `pusher` SDK's WebHook validation, and can fail on demand.
const http = require('node:http');
const { until } = require('./clients');

class WebhookReceiver {
  constructor() {
    this.requests = [];
    // Requests whose raw body matches are answered 500, `times` times.
    this.failures = [];
    this.server = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const rawBody = Buffer.concat(chunks).toString('utf8');
        const rule = this.failures.find((f) => f.times > 0 && f.match(rawBody));
        const failed = Boolean(rule);
        if (rule) rule.times--;
        this.requests.push({
          at: Date.now(),
          method: req.method,
          path: req.url,
          headers: req.headers,
          rawBody,
          failed,
        });
        res.writeHead(failed ? 500 : 200, { 'content-type': 'text/plain' });
        res.end(failed ? 'try again later' : 'ok');
      });
    });
  }

  listen() {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        this.url = `http://127.0.0.1:${this.port}`;
        resolve(this);
      });
    });
  }

  close() {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(resolve));
  }

  /** Answers the next `times` requests whose body contains `text` with 500. */
  failFor(text, times = 1) {
    this.failures.push({ match: (body) => body.includes(text), times });
  }

  /** Every event accepted so far on `path` (default: any), with its request. */
  events(path) {
    const out = [];
    for (const request of this.requests) {
      if (request.failed) continue;
      if (path && !request.path.startsWith(path)) continue;
      let body;
      try {
        body = JSON.parse(request.rawBody);
      } catch {
        continue;
      }
      for (const event of body.events || []) out.push({ event, request, body });
    }
    return out;
  }

  /** Resolves with the first event matching `predicate`, within the deadline. */
  waitFor(predicate, { path, timeout = 8000, what = 'a webhook' } = {}) {
    return until(() => this.events(path).find(({ event }) => predicate(event)), { timeout, interval: 20, what });
  }
}

async function webhookReceiver() {
  return new WebhookReceiver().listen();
}

module.exports = { webhookReceiver };
