// POST /api/messages/send: stores a message from the signed-in user and
// returns it in full. The engine then triggers `new-message` on
// `private-conversation-{lo}-{hi}` through its pusher transport (this
// replaces the Pusher SDK's `pusherServer.trigger(...)` after the database
// insert: one durable step instead of two that can disagree).
//
// Body (JSON): {"recipientId": "18", "content": "Hello", "senderId"?: "1",
// "clientMsgId"?: "retry key"}. senderId, when given, must be the signed-in
// user. Answers 201 with the message (200 for a retry with a known
// clientMsgId), 400 for a bad body, 401 when nobody is signed in, 403 for
// someone else's senderId.
import { errorResponse, json } from '../../../../lib/http';
import { currentUser } from '../../../../lib/session';
import { getEngine } from '../../../../lib/tidings-server';

interface SendBody {
  senderId?: unknown;
  recipientId?: unknown;
  content?: unknown;
  clientMsgId?: unknown;
}

const asId = (v: unknown): string | null =>
  typeof v === 'string' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : null;

export async function POST(req: Request): Promise<Response> {
  const user = currentUser(req);
  if (!user) return json({ error: 'not signed in' }, 401);

  let body: SendBody;
  try {
    body = (await req.json()) as SendBody;
  } catch {
    return json({ error: 'the body must be JSON' }, 400);
  }
  if (body === null || typeof body !== 'object') return json({ error: 'the body must be a JSON object' }, 400);
  if (body.senderId !== undefined && asId(body.senderId) !== user) {
    return json({ error: 'senderId is not the signed-in user' }, 403);
  }
  const recipient = asId(body.recipientId);
  if (recipient === null) return json({ error: 'recipientId must be a user id' }, 400);
  if (typeof body.content !== 'string') return json({ error: 'content must be a string' }, 400);
  if (body.clientMsgId !== undefined && typeof body.clientMsgId !== 'string') {
    return json({ error: 'clientMsgId must be a string' }, 400);
  }

  try {
    const engine = await getEngine();
    const { message, created } = await engine.send({
      from: user,
      to: recipient,
      body: body.content,
      ...(body.clientMsgId !== undefined ? { client_msg_id: body.clientMsgId } : {}),
    });
    return json(message, created ? 201 : 200);
  } catch (err) {
    return errorResponse(err);
  }
}
