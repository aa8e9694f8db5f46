// /?me=1&peer=18: user 1's chat with user 18. The conversation channel is
// computed on the server with the same rule the engine uses.
import { conversationId } from 'tidings';
import { Chat } from './chat';

export const dynamic = 'force-dynamic';

export default async function Page({ searchParams }: { searchParams: Promise<{ me?: string; peer?: string }> }) {
  const { me = '1', peer = '18' } = await searchParams;
  const channel = `private-conversation-${conversationId(me, peer)}`;
  return (
    <main>
      <h1>
        {me} talking to {peer}
      </h1>
      <Chat me={me} peer={peer} channel={channel} />
    </main>
  );
}
