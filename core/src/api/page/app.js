/*
 * tidings chat page: plain JavaScript, no build step, pusher-js vendored.
 *
 * Stable hooks for browser tests (data-testid unless noted):
 *   signin-input      user id (--demo mode) or a user token; `signin-button`
 *                     submits, `signin-error` shows why it failed.
 *                     Shortcuts: /?user=18 (demo mode) or /?token=v1.… sign in at load.
 *   me                the signed-in user (attribute data-user); `signout-button`.
 *   connection        pusher-js state: data-state="connected" | "connecting" | "offline"
 *                     (offline = unavailable, failed, disconnected or not started).
 *   peer-input, open-conversation   open or start a conversation with a user id.
 *   conversation-list the inbox, newest first; items are `conversation` with
 *                     data-conversation-id, data-peer, data-unread, and inside
 *                     `unread-count` (text = number of unread messages).
 *   peer-name         whom the open conversation is with (data-peer,
 *                     data-conversation-id).
 *   presence          whether the peer is online: data-state="online" | "offline" | "unknown".
 *   message-list      the open conversation, oldest first; items are `message`
 *                     with data-seq (empty while pending), data-id, data-client-msg-id,
 *                     data-sender, data-status="pending" | "sent" | "read" | "failed"
 *                     (own messages) or "received"; class `mine` on own messages.
 *                     Inside: `message-body`, and on own messages `receipt` with
 *                     data-state like data-status and text ✓ (stored) or ✓✓ (read).
 *   load-older        loads the previous page (scrolling to the top does too).
 *   typing-indicator  "18 is typing…" while the peer types, empty otherwise.
 *   composer-input, send-button   write and send (Enter sends).
 *   chat-error        the last error of an action.
 *
 * Live updates: the conversation's private channel (new-message,
 * messages-read, message-edited, message-deleted, reaction, typing and the
 * client event client-typing), its presence channel, and after
 * pusher.signin() the user's own channel (new-message, messages-read of
 * every conversation, for the inbox). After every (re)subscription the page
 * fetches the messages after the last seq it has, so nothing is missed.
 */
(function () {
  'use strict';

  const PAGE_SIZE = 30;
  const TYPING_SEND_EVERY_MS = 2000;
  const TYPING_SHOW_MS = 4000;
  const CREDENTIAL_KEY = 'tidings.credential';

  const $ = (id) => document.getElementById(id);
  const els = {
    me: $('me'), signout: $('signout-button'), connection: $('connection'),
    signin: $('signin'), signinForm: $('signin-form'), signinInput: $('signin-input'),
    signinLabel: $('signin-label'), signinHelp: $('signin-help'), signinError: $('signin-error'),
    chat: $('chat'), openForm: $('open-form'), peerInput: $('peer-input'),
    conversations: $('conversations'), peerName: $('peer-name'), presence: $('presence'),
    scroller: $('scroller'), loadOlder: $('load-older'), messages: $('messages'),
    typing: $('typing'), composer: $('composer'), composerInput: $('composer-input'),
    sendButton: $('send-button'), chatError: $('chat-error'),
  };

  const state = {
    config: null,
    me: null,
    headers: {},
    pusher: null,
    everConnected: false,
    convs: new Map(), // conversation id -> { id, peer, last, unread, lastSeq }
    open: null,
    generation: 0,
  };

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, kind, message) {
      super(message);
      this.status = status;
      this.kind = kind;
    }
  }

  async function api(method, path, body) {
    const headers = Object.assign({}, state.headers);
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      const err = data && data.error;
      throw new ApiError(res.status, err ? err.kind : 'http', err ? err.message : `${res.status} ${res.statusText}`);
    }
    return data;
  }

  function showError(err) {
    els.chatError.textContent = err ? (err.message || String(err)) : '';
  }

  // ---------------------------------------------------------------- sign in

  function credentialHeaders(cred) {
    return cred.kind === 'user'
      ? { 'X-Tidings-User': cred.value }
      : { Authorization: 'Bearer ' + cred.value };
  }

  async function signIn(cred) {
    state.headers = credentialHeaders(cred);
    const who = await api('GET', '/v1/me');
    state.me = String(who.user_id);
    sessionStorage.setItem(CREDENTIAL_KEY, JSON.stringify(cred));
    els.me.textContent = 'signed in as ' + state.me;
    els.me.dataset.user = state.me;
    els.signout.hidden = false;
    els.signin.hidden = true;
    els.chat.hidden = false;
    connect();
    await loadInbox();
    const last = sessionStorage.getItem(CREDENTIAL_KEY + '.open.' + state.me);
    if (last) {
      const conv = state.convs.get(last);
      if (conv) openConversation(conv.id, conv.peer);
    }
  }

  function signOut() {
    sessionStorage.removeItem(CREDENTIAL_KEY);
    if (state.pusher) state.pusher.disconnect();
    location.href = location.pathname;
  }

  function showSignIn() {
    const demo = state.config.demo;
    els.signinLabel.textContent = demo ? 'User id' : 'User token';
    els.signinInput.placeholder = demo ? 'e.g. 1 or 18' : 'v1.…';
    els.signinHelp.textContent = demo
      ? 'Demo mode: type any user id. Open a second browser as another user to chat.'
      : 'Paste a user token from your app, or mint one with: tidings token --user ID';
    els.signin.hidden = false;
    els.chat.hidden = true;
    els.signinInput.focus();
  }

  els.signinForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = els.signinInput.value.trim();
    if (!value) return;
    els.signinError.textContent = '';
    try {
      await signIn({ kind: state.config.demo ? 'user' : 'token', value });
    } catch (err) {
      state.headers = {};
      els.signinError.textContent = err.message;
    }
  });
  els.signout.addEventListener('click', signOut);

  // ---------------------------------------------------------------- pusher-js

  function setConnection(pusherState) {
    const shown = pusherState === 'connected' ? 'connected'
      : (pusherState === 'connecting' || pusherState === 'initialized') ? 'connecting'
        : 'offline';
    els.connection.dataset.state = shown;
    els.connection.dataset.pusherState = pusherState;
    els.connection.className = 'pill ' + shown;
    els.connection.textContent = shown;
    if (shown !== 'connected' && state.open) setPresence('unknown');
  }

  function connect() {
    const cfg = state.config;
    const port = Number(location.port) || (location.protocol === 'https:' ? 443 : 80);
    const auth = { transport: 'ajax', headers: state.headers };
    const pusher = new Pusher(cfg.app_key, {
      cluster: cfg.cluster || 'local',
      wsHost: location.hostname,
      wsPort: port,
      wssPort: port,
      forceTLS: false,
      enabledTransports: ['ws', 'wss'],
      disableStats: true,
      unavailableTimeout: 5000,
      channelAuthorization: Object.assign({ endpoint: cfg.channel_auth_endpoint }, auth),
      userAuthentication: Object.assign({ endpoint: cfg.user_auth_endpoint }, auth),
    });
    state.pusher = pusher;
    setConnection(pusher.connection.state);
    pusher.connection.bind('state_change', (s) => {
      setConnection(s.current);
      if (s.current === 'connected') {
        if (state.everConnected) loadInbox().catch(showError);
        state.everConnected = true;
      }
    });
    pusher.signin();
    pusher.user.bind('new-message', (m) => onNewMessage(m));
    pusher.user.bind('messages-read', (r) => onMessagesRead(r));
  }

  // ---------------------------------------------------------------- inbox

  async function loadInbox() {
    const inbox = await api('GET', '/v1/inbox?limit=100');
    for (const e of inbox.items) {
      const id = e.conversation_id;
      const conv = state.convs.get(id) || { id, peer: String(e.peer_id), lastSeq: 0 };
      conv.last = e.last_message;
      conv.lastSeq = Math.max(conv.lastSeq, e.last_message.seq);
      conv.unread = isOpenAndVisible(id) ? 0 : e.unread_count;
      state.convs.set(id, conv);
    }
    renderInbox();
    if (state.open) markReadSoon();
  }

  function isOpenAndVisible(id) {
    return state.open && state.open.id === id && document.visibilityState === 'visible';
  }

  function renderInbox() {
    const convs = [...state.convs.values()].sort((a, b) =>
      (b.last ? b.last.created_at : 0) - (a.last ? a.last.created_at : 0));
    els.conversations.replaceChildren(...convs.map((c) => {
      const li = document.createElement('li');
      li.dataset.testid = 'conversation';
      li.dataset.conversationId = c.id;
      li.dataset.peer = c.peer;
      li.dataset.unread = String(c.unread || 0);
      if (state.open && state.open.id === c.id) li.classList.add('active');
      const peer = document.createElement('span');
      peer.className = 'peer';
      peer.textContent = c.peer;
      const preview = document.createElement('span');
      preview.className = 'preview';
      preview.textContent = c.last ? (c.last.deleted_at ? '(deleted)' : c.last.body) : '';
      const unread = document.createElement('span');
      unread.className = 'unread';
      unread.dataset.testid = 'unread-count';
      unread.dataset.count = String(c.unread || 0);
      unread.textContent = String(c.unread || 0);
      li.append(peer, preview, unread);
      li.addEventListener('click', () => openConversation(c.id, c.peer));
      return li;
    }));
  }

  function touchConversation(message) {
    const id = message.conversation_id;
    let conv = state.convs.get(id);
    if (!conv) {
      const peer = String(message.sender_id) === state.me
        ? peerOf(id) : String(message.sender_id);
      conv = { id, peer, lastSeq: 0, unread: 0 };
      state.convs.set(id, conv);
    }
    if (message.seq > conv.lastSeq) {
      conv.lastSeq = message.seq;
      conv.last = message;
      if (String(message.sender_id) !== state.me && !isOpenAndVisible(id)) {
        conv.unread = (conv.unread || 0) + 1;
      }
    } else if (conv.last && conv.last.id === message.id) {
      conv.last = message;
    }
    renderInbox();
  }

  // The other member of a conversation id `lo-hi` (ids escape '-' as =2D).
  function peerOf(id) {
    const unescape = (s) => s.replace(/=2D/g, '-').replace(/=3D/g, '=');
    const [lo, hi] = id.split('-').map(unescape);
    return lo === state.me ? hi : lo;
  }

  // ---------------------------------------------------------------- conversation

  els.openForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const peer = els.peerInput.value.trim();
    if (!peer) return;
    showError(null);
    try {
      const summary = await api('GET', '/v1/conversations/with/' + encodeURIComponent(peer));
      els.peerInput.value = '';
      await openConversation(summary.conversation_id, String(summary.peer_id));
    } catch (err) {
      showError(err);
    }
  });

  async function openConversation(id, peer) {
    const pusher = state.pusher;
    if (state.open) {
      if (state.open.id === id) return;
      closeConversation();
    }
    const gen = ++state.generation;
    const open = {
      id, peer, gen,
      bySeq: new Map(), // seq -> element
      pending: new Map(), // client_msg_id -> element
      messages: new Map(), // element -> message
      nextBefore: null,
      lastSeq: 0,
      peerReadSeq: 0,
      myReadSeq: 0,
      loadingOlder: false,
      lastTypingSent: 0,
      typingTimer: null,
      channel: null,
      presence: null,
    };
    state.open = open;
    sessionStorage.setItem(CREDENTIAL_KEY + '.open.' + state.me, id);
    els.peerName.textContent = peer;
    els.peerName.dataset.peer = peer;
    els.peerName.dataset.conversationId = id;
    els.messages.replaceChildren();
    els.loadOlder.hidden = true;
    setTyping(null);
    setPresence('unknown');
    els.presence.hidden = false;
    els.composerInput.disabled = false;
    els.sendButton.disabled = false;
    if (!state.convs.has(id)) state.convs.set(id, { id, peer, lastSeq: 0, unread: 0 });
    state.convs.get(id).unread = 0;
    renderInbox();
    showError(null);
    try {
      const [summary, page] = await Promise.all([
        api('GET', `/v1/conversations/${encodeURIComponent(id)}`),
        api('GET', `/v1/conversations/${encodeURIComponent(id)}/messages?limit=${PAGE_SIZE}`),
      ]);
      if (gen !== state.generation) return;
      open.peerReadSeq = summary.peer_read_seq;
      open.myReadSeq = summary.read_seq;
      for (const m of page.items.slice().reverse()) addMessage(m);
      open.nextBefore = page.next_before;
      els.loadOlder.hidden = open.nextBefore == null;
      scrollToBottom();
    } catch (err) {
      showError(err);
    }
    if (gen !== state.generation) return;
    subscribe(open, pusher);
    markReadSoon();
    els.composerInput.focus();
  }

  function closeConversation() {
    const open = state.open;
    if (!open) return;
    if (open.channel) state.pusher.unsubscribe(open.channel.name);
    if (open.presence) state.pusher.unsubscribe(open.presence.name);
    clearTimeout(open.typingTimer);
    state.open = null;
  }

  function subscribe(open, pusher) {
    const channel = pusher.subscribe('private-conversation-' + open.id);
    open.channel = channel;
    const mine = () => state.open === open;
    channel.bind('pusher:subscription_succeeded', () => { if (mine()) catchUp(open); });
    channel.bind('pusher:subscription_error', (e) => {
      if (mine()) showError(new Error('live updates refused: ' + (e && e.error ? e.error : 'auth error')));
    });
    channel.bind('new-message', (m) => onNewMessage(m));
    channel.bind('messages-read', (r) => onMessagesRead(r));
    channel.bind('message-edited', (m) => { if (mine()) addMessage(m); touchConversation(m); });
    channel.bind('message-deleted', (m) => { if (mine()) addMessage(m); touchConversation(m); });
    channel.bind('reaction', (r) => { if (mine()) onReaction(r); });
    channel.bind('typing', (t) => { if (mine() && String(t.user_id) !== state.me) setTyping(open.peer); });
    channel.bind('client-typing', () => { if (mine()) setTyping(open.peer); });

    const presence = pusher.subscribe('presence-conversation-' + open.id);
    open.presence = presence;
    const refresh = () => {
      if (!mine()) return;
      setPresence(presence.members.get(open.peer) ? 'online' : 'offline');
    };
    presence.bind('pusher:subscription_succeeded', refresh);
    presence.bind('pusher:member_added', refresh);
    presence.bind('pusher:member_removed', refresh);
  }

  // Fetches what was stored after the last seq shown (after a (re)connect).
  async function catchUp(open) {
    try {
      let after = open.lastSeq;
      for (;;) {
        const r = await api('GET', `/v1/conversations/${encodeURIComponent(open.id)}/messages?after=${after}&limit=100`);
        if (state.open !== open) return;
        for (const m of r.items) { addMessage(m); touchConversation(m); }
        if (!r.has_more) break;
        after = r.next_after;
      }
      const summary = await api('GET', `/v1/conversations/${encodeURIComponent(open.id)}`);
      if (state.open !== open) return;
      open.peerReadSeq = Math.max(open.peerReadSeq, summary.peer_read_seq);
      refreshReceipts();
      markReadSoon();
    } catch (err) {
      showError(err);
    }
  }

  function setPresence(s) {
    els.presence.dataset.state = s;
    els.presence.textContent = s === 'online' ? 'online' : s === 'offline' ? 'offline' : '';
  }

  function setTyping(peer) {
    const open = state.open;
    if (open) clearTimeout(open.typingTimer);
    els.typing.textContent = peer ? `${peer} is typing…` : '';
    els.typing.dataset.typing = peer ? 'true' : 'false';
    if (peer && open) open.typingTimer = setTimeout(() => setTyping(null), TYPING_SHOW_MS);
  }

  // ---------------------------------------------------------------- messages

  function onNewMessage(m) {
    touchConversation(m);
    const open = state.open;
    if (!open || open.id !== m.conversation_id) return;
    addMessage(m);
    if (String(m.sender_id) !== state.me) {
      setTyping(null);
      markReadSoon();
    }
  }

  function onMessagesRead(r) {
    const id = r.conversation_id;
    const user = String(r.user_id);
    if (user === state.me) {
      const conv = state.convs.get(id);
      if (conv && conv.lastSeq <= r.seq && conv.unread) { conv.unread = 0; renderInbox(); }
    }
    const open = state.open;
    if (!open || open.id !== id) return;
    if (user === state.me) {
      open.myReadSeq = Math.max(open.myReadSeq, r.seq);
    } else if (r.seq > open.peerReadSeq) {
      open.peerReadSeq = r.seq;
      refreshReceipts();
    }
  }

  function onReaction(r) {
    const el = state.open.bySeq.get(r.seq);
    if (!el) return;
    const m = state.open.messages.get(el);
    const reactions = m.reactions.filter((x) => String(x.user_id) !== String(r.user_id));
    if (r.emoji) reactions.push({ user_id: r.user_id, emoji: r.emoji });
    renderMessage(el, Object.assign({}, m, { reactions }));
  }

  function isNearBottom() {
    const s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  // Shows a stored message once: by seq, or in place of its pending copy.
  function addMessage(m) {
    const open = state.open;
    if (!open || m.conversation_id !== open.id) return;
    const stick = isNearBottom() || String(m.sender_id) === state.me;
    let el = open.bySeq.get(m.seq);
    if (!el && m.client_msg_id && open.pending.has(m.client_msg_id)) {
      el = open.pending.get(m.client_msg_id);
      open.pending.delete(m.client_msg_id);
      el.remove();
    }
    const isNew = !el || !el.isConnected;
    if (!el) el = document.createElement('li');
    renderMessage(el, m);
    open.bySeq.set(m.seq, el);
    if (isNew) insertBySeq(el, m.seq);
    if (m.seq > open.lastSeq) open.lastSeq = m.seq;
    if (stick) scrollToBottom();
  }

  function insertBySeq(el, seq) {
    for (const child of els.messages.children) {
      const s = child.dataset.seq;
      if (s === '' || Number(s) > seq) { els.messages.insertBefore(el, child); return; }
    }
    els.messages.appendChild(el);
  }

  function statusOf(m) {
    if (String(m.sender_id) !== state.me) return 'received';
    if (m.seq == null) return m.failed ? 'failed' : 'pending';
    return m.seq <= state.open.peerReadSeq ? 'read' : 'sent';
  }

  function renderMessage(el, m) {
    state.open.messages.set(el, m);
    const status = statusOf(m);
    el.dataset.testid = 'message';
    el.dataset.seq = m.seq == null ? '' : String(m.seq);
    el.dataset.id = m.id == null ? '' : String(m.id);
    el.dataset.clientMsgId = m.client_msg_id || '';
    el.dataset.sender = String(m.sender_id);
    el.dataset.status = status;
    el.classList.toggle('mine', String(m.sender_id) === state.me);
    el.classList.toggle('deleted', !!m.deleted_at);
    const body = document.createElement('span');
    body.className = 'body';
    body.dataset.testid = 'message-body';
    body.textContent = m.deleted_at ? 'message deleted' : m.body;
    const parts = [body];
    if (m.reactions && m.reactions.length) {
      const reactions = document.createElement('span');
      reactions.className = 'reactions';
      reactions.dataset.testid = 'reactions';
      reactions.textContent = m.reactions.map((r) => r.emoji).join(' ');
      parts.push(reactions);
    }
    const meta = document.createElement('span');
    meta.className = 'meta';
    if (m.created_at) {
      const time = document.createElement('time');
      const when = new Date(m.created_at);
      time.dateTime = when.toISOString();
      time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      meta.append(time);
    }
    if (m.edited_at && !m.deleted_at) meta.append(' (edited)');
    if (status !== 'received') {
      const receipt = document.createElement('span');
      receipt.className = 'receipt';
      receipt.dataset.testid = 'receipt';
      receipt.dataset.state = status;
      receipt.textContent = { pending: ' …', sent: ' ✓', read: ' ✓✓', failed: ' ! retry' }[status];
      receipt.title = { pending: 'sending', sent: 'stored', read: 'read', failed: 'not sent: click to retry' }[status];
      meta.append(receipt);
    }
    parts.push(meta);
    el.replaceChildren(...parts);
  }

  function refreshReceipts() {
    const open = state.open;
    for (const [el, m] of open.messages) {
      if (!el.isConnected || m.seq == null || String(m.sender_id) !== state.me) continue;
      const status = statusOf(m);
      if (el.dataset.status !== status) renderMessage(el, m);
    }
  }

  async function loadOlder() {
    const open = state.open;
    if (!open || open.loadingOlder || open.nextBefore == null) return;
    open.loadingOlder = true;
    try {
      const page = await api('GET', `/v1/conversations/${encodeURIComponent(open.id)}/messages?before=${open.nextBefore}&limit=${PAGE_SIZE}`);
      if (state.open !== open) return;
      const scroller = els.scroller;
      const before = scroller.scrollHeight - scroller.scrollTop;
      for (const m of page.items) addOlder(m);
      scroller.scrollTop = scroller.scrollHeight - before;
      open.nextBefore = page.next_before;
      els.loadOlder.hidden = open.nextBefore == null;
    } catch (err) {
      showError(err);
    } finally {
      open.loadingOlder = false;
    }
  }

  function addOlder(m) {
    const open = state.open;
    if (open.bySeq.has(m.seq)) return;
    const el = document.createElement('li');
    renderMessage(el, m);
    open.bySeq.set(m.seq, el);
    insertBySeq(el, m.seq);
  }

  els.loadOlder.addEventListener('click', loadOlder);
  els.scroller.addEventListener('scroll', () => { if (els.scroller.scrollTop < 40) loadOlder(); });

  // ---------------------------------------------------------------- reading

  let readScheduled = false;
  function markReadSoon() {
    if (readScheduled) return;
    readScheduled = true;
    queueMicrotask(async () => {
      readScheduled = false;
      const open = state.open;
      if (!open || document.visibilityState !== 'visible') return;
      // The newest message from the peer that is shown.
      let newest = 0;
      for (const [el, m] of open.messages) {
        if (el.isConnected && m.seq != null && String(m.sender_id) !== state.me && m.seq > newest) newest = m.seq;
      }
      if (newest <= open.myReadSeq) return;
      open.myReadSeq = newest;
      const conv = state.convs.get(open.id);
      if (conv && conv.unread) { conv.unread = 0; renderInbox(); }
      try {
        await api('POST', `/v1/conversations/${encodeURIComponent(open.id)}/read`, { seq: newest });
      } catch (err) {
        showError(err);
      }
    });
  }
  document.addEventListener('visibilitychange', markReadSoon);
  window.addEventListener('focus', markReadSoon);

  // ---------------------------------------------------------------- sending

  function newClientMsgId() {
    const random = (crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2));
    return 'web-' + random;
  }

  async function send(open, body, clientMsgId, el) {
    const pending = { conversation_id: open.id, sender_id: state.me, body, client_msg_id: clientMsgId, seq: null, id: null, created_at: Date.now(), reactions: [] };
    renderMessage(el, pending);
    try {
      const r = await api('POST', '/v1/messages', { conversation_id: open.id, body, client_msg_id: clientMsgId });
      touchConversation(r.message);
      if (state.open === open) addMessage(r.message);
    } catch (err) {
      if (state.open !== open || !open.pending.has(clientMsgId)) return;
      renderMessage(el, Object.assign(pending, { failed: true }));
      el.title = err.message;
      showError(err);
    }
  }

  els.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const open = state.open;
    const body = els.composerInput.value.trim();
    if (!open || !body) return;
    els.composerInput.value = '';
    showError(null);
    const clientMsgId = newClientMsgId();
    const el = document.createElement('li');
    open.pending.set(clientMsgId, el);
    els.messages.appendChild(el);
    el.addEventListener('click', () => {
      if (el.dataset.status === 'failed' && state.open === open) send(open, body, clientMsgId, el);
    });
    send(open, body, clientMsgId, el);
    scrollToBottom();
  });

  els.composerInput.addEventListener('input', () => {
    const open = state.open;
    if (!open || !open.channel || !open.channel.subscribed || !els.composerInput.value) return;
    const now = Date.now();
    if (now - open.lastTypingSent < TYPING_SEND_EVERY_MS) return;
    open.lastTypingSent = now;
    open.channel.trigger('client-typing', { user_id: state.me });
  });

  // ---------------------------------------------------------------- start

  async function start() {
    try {
      state.config = await api('GET', '/v1/config');
    } catch (err) {
      els.signin.hidden = false;
      els.signinError.textContent = 'cannot reach the server: ' + err.message;
      return;
    }
    setConnection('disconnected');
    const params = new URLSearchParams(location.search);
    let cred = null;
    if (params.get('token')) cred = { kind: 'token', value: params.get('token') };
    else if (params.get('user') && state.config.demo) cred = { kind: 'user', value: params.get('user') };
    else {
      try { cred = JSON.parse(sessionStorage.getItem(CREDENTIAL_KEY) || 'null'); } catch (_) { cred = null; }
    }
    if (cred && cred.kind === 'user' && !state.config.demo) cred = null;
    if (cred) {
      try {
        await signIn(cred);
        return;
      } catch (err) {
        state.headers = {};
        sessionStorage.removeItem(CREDENTIAL_KEY);
        els.signinError.textContent = err.message;
      }
    }
    showSignIn();
  }

  start();
})();
