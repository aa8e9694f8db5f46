// JSON responses and the HTTP status of a tidings error.
import { TidingsError } from 'tidings';

export function json(body: unknown, status = 200): Response {
  return Response.json(body, { status });
}

const STATUS_OF: Record<string, number> = {
  TIDINGS_INVALID_ARGUMENT: 400,
  TIDINGS_INVALID_JSON: 400,
  TIDINGS_INVALID_UTF8: 400,
  TIDINGS_UNAUTHORIZED: 401,
  TIDINGS_FORBIDDEN: 403,
  TIDINGS_NOT_FOUND: 404,
  TIDINGS_CONFLICT: 409,
  TIDINGS_SHUT_DOWN: 503,
};

/** A tidings error as `{error, code}` with a fitting status; anything else is a 500. */
export function errorResponse(err: unknown): Response {
  if (err instanceof TidingsError) {
    return json({ error: err.message, code: err.code }, STATUS_OF[err.code] ?? 500);
  }
  console.error(err);
  return json({ error: 'internal error' }, 500);
}
