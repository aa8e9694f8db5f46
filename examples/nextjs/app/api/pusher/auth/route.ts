// POST /api/pusher/auth: pusher-js's channel authorization endpoint (it
// posts `socket_id` and `channel_name` form-encoded). Only the two members
// of `private-conversation-{a}-{b}` (or `presence-conversation-{a}-{b}`)
// may subscribe; anyone else, any other channel and a request with nobody
// signed in get 403. Replaces `pusherServer.authorizeChannel(...)`.
import { channelAuth, conversationOfChannel, presenceAuth } from 'tidings';
import { json } from '../../../../lib/http';
import { currentUser } from '../../../../lib/session';
import { tidingsApp } from '../../../../lib/tidings-server';

export async function POST(req: Request): Promise<Response> {
  const user = currentUser(req);
  if (!user) return json({ error: 'not signed in' }, 403);

  const form = new URLSearchParams(await req.text());
  const socketId = form.get('socket_id');
  const channel = form.get('channel_name');
  if (!socketId || !channel) return json({ error: 'socket_id and channel_name are required' }, 400);

  let members: string[];
  let presence: boolean;
  try {
    ({ members, presence } = conversationOfChannel(channel));
  } catch {
    return json({ error: `${channel} is not a conversation channel` }, 403);
  }
  if (!members.includes(user)) return json({ error: `user ${user} is not in this conversation` }, 403);

  const app = tidingsApp();
  try {
    if (presence) {
      return json(presenceAuth(app.key, app.secret, socketId, channel, { user_id: user, user_info: { id: user } }));
    }
    return json({ auth: channelAuth(app.key, app.secret, socketId, channel) });
  } catch {
    // A malformed socket id.
    return json({ error: 'invalid socket_id' }, 400);
  }
}
