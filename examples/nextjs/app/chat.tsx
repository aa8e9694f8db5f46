'use client';
// The chat between two users: pusher-js subscribes to the conversation
// channel (authorized by /api/pusher/auth) and shows every `new-message`;
// the form posts to /api/messages/send.
import { useEffect, useState, type FormEvent } from 'react';
import { createPusherClient } from '../lib/pusher-client';

interface Message {
  id: number;
  seq: number;
  sender_id: string;
  body: string;
  created_at: number;
}

export function Chat({ me, peer, channel, initial }: { me: string; peer: string; channel: string; initial: Message[] }) {
  const [messages, setMessages] = useState<Message[]>(initial);
  const [draft, setDraft] = useState('');
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const pusher = createPusherClient({
      key: process.env.NEXT_PUBLIC_TIDINGS_KEY || 'tidings-key',
      wsHost: process.env.NEXT_PUBLIC_TIDINGS_WS_HOST || '127.0.0.1',
      wsPort: Number(process.env.NEXT_PUBLIC_TIDINGS_WS_PORT || 6001),
      userId: me,
    });
    const subscription = pusher.subscribe(channel);
    subscription.bind('new-message', (message: Message) => {
      // Delivery is at least once: dedupe by id, keep seq order.
      setMessages((all) =>
        all.some((m) => m.id === message.id) ? all : [...all, message].sort((a, b) => a.seq - b.seq),
      );
    });
    subscription.bind('pusher:subscription_error', () => setError(`not allowed to read ${channel}`));
    return () => {
      pusher.unsubscribe(channel);
      pusher.disconnect();
    };
  }, [me, channel]);

  async function send(event: FormEvent) {
    event.preventDefault();
    if (!draft.trim()) return;
    const res = await fetch('/api/messages/send', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': me },
      body: JSON.stringify({ senderId: me, recipientId: peer, content: draft, clientMsgId: crypto.randomUUID() }),
    });
    if (res.ok) {
      setDraft('');
      setError(null);
    } else {
      setError(((await res.json()) as { error?: string }).error ?? `HTTP ${res.status}`);
    }
  }

  return (
    <section>
      <ol>
        {messages.map((m) => (
          <li key={m.id} className={m.sender_id === me ? 'mine' : 'theirs'}>
            <b>{m.sender_id}</b> {m.body}
          </li>
        ))}
      </ol>
      <form onSubmit={send}>
        <input value={draft} onChange={(e) => setDraft(e.target.value)} placeholder={`Message ${peer}`} />
        <button type="submit">Send</button>
      </form>
      {error && <p role="alert">{error}</p>}
    </section>
  );
}
