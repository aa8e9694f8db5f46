// /?me=1&peer=18: user 1's chat with user 18. The conversation id and its
// channel are computed on the server with the engine's own rule, and the
// newest history comes from the engine; pusher-js adds what follows.
import { conversationId } from 'tidings';
import { getEngine } from '../lib/tidings-server';
import { Chat } from './chat';

export const dynamic = 'force-dynamic';

export default async function Page({ searchParams }: { searchParams: Promise<{ me?: string; peer?: string }> }) {
  const { me = '1', peer = '18' } = await searchParams;
  const id = conversationId(me, peer);
  const channel = `private-conversation-${id}`;
  const history = await (await getEngine()).history(id, { limit: 50 });
  return (
    <main>
      <h1>
        {me} talking to {peer}
      </h1>
      <Chat me={me} peer={peer} channel={channel} initial={history.items.reverse()} />
    </main>
  );
}
