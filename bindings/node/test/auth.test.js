'use strict';
// The auth helpers a host's own endpoints need: Pusher signatures,
// conversation ids and channels, user tokens.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test } = require('node:test');
const tidings = require('..');
const { throwsWith } = require('./lib/helpers');

const hmac = (secret, text) => crypto.createHmac('sha256', secret).update(text).digest('hex');

test('channelAuth: the Pusher documentation\'s example', () => {
  assert.equal(
    tidings.channelAuth('278d425bdf160c739803', '7ad3773142a6692b25b8', '1234.1234', 'private-foobar'),
    '278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4',
  );
  assert.equal(
    tidings.channelAuth('key', 'secret', '1.2', 'private-conversation-1-18'),
    `key:${hmac('secret', '1.2:private-conversation-1-18')}`,
  );
});

test('channelAuth refuses what could make one signature pass for another', () => {
  throwsWith(assert, () => tidings.channelAuth('k', 'secret', '1234:1', 'private-x'), 'TIDINGS_INVALID_ARGUMENT', 'socket_id');
  throwsWith(assert, () => tidings.channelAuth('k', 'secret', '1.1', 'private x'), 'TIDINGS_INVALID_ARGUMENT', 'channel');
});

test('presenceAuth signs channel_data and returns it exactly as signed', () => {
  const member = { user_id: '10', user_info: { name: 'Mr. Channels' } };
  const out = tidings.presenceAuth('key', 'secret', '1234.1234', 'presence-foobar', member);
  assert.equal(out.channel_data, JSON.stringify(member));
  assert.equal(out.auth, `key:${hmac('secret', `1234.1234:presence-foobar:${out.channel_data}`)}`);
  const text = '{"user_id":"10"}';
  assert.equal(tidings.presenceAuth('key', 'secret', '1.1', 'presence-x', text).channel_data, text);
  throwsWith(assert, () => tidings.presenceAuth('k', 'secret', '1.1', 'presence-x', '{'), 'TIDINGS_INVALID_JSON', 'channel_data');
});

test('userAuth signs user_data for pusher:signin', () => {
  const out = tidings.userAuth('key', 'secret', '1.1', { id: '17', name: 'Ada' });
  assert.equal(out.user_data, '{"id":"17","name":"Ada"}');
  assert.equal(out.auth, `key:${hmac('secret', `1.1::user::${out.user_data}`)}`);
  throwsWith(assert, () => tidings.userAuth('k', 'secret', '1.1', '[1]'), 'TIDINGS_INVALID_ARGUMENT', 'user_data');
});

test('conversationId is the same in either order', () => {
  assert.equal(tidings.conversationId('1', '18'), '1-18');
  assert.equal(tidings.conversationId('18', '1'), '1-18');
  assert.equal(tidings.conversationId(18, 1), '1-18');
  // Numeric ids compare as numbers.
  assert.equal(tidings.conversationId('9', '10'), '9-10');
  throwsWith(assert, () => tidings.conversationId('a b', '1'), 'TIDINGS_INVALID_ARGUMENT');
});

test('conversationOfChannel names the two members', () => {
  assert.deepEqual(tidings.conversationOfChannel('private-conversation-1-18'), {
    conversation_id: '1-18',
    members: ['1', '18'],
    presence: false,
  });
  assert.equal(tidings.conversationOfChannel('presence-conversation-1-18').presence, true);
  throwsWith(assert, () => tidings.conversationOfChannel('private-conversation-18-1'), 'TIDINGS_INVALID_ARGUMENT', 'not a conversation channel');
  throwsWith(assert, () => tidings.conversationOfChannel('private-foobar'), 'TIDINGS_INVALID_ARGUMENT');
});

test('tokenMint and tokenVerify round-trip; forged and expired tokens are UNAUTHORIZED', () => {
  const token = tidings.tokenMint('app-secret-123', '17', 60);
  const claims = tidings.tokenVerify('app-secret-123', token);
  assert.equal(claims.user, '17');
  const now = Date.now() / 1000;
  assert.ok(claims.exp > now + 50 && claims.exp < now + 70, `exp ${claims.exp}`);
  const day = tidings.tokenVerify('app-secret-123', tidings.tokenMint('app-secret-123', 17));
  assert.ok(day.exp > now + 86000);
  throwsWith(assert, () => tidings.tokenVerify('another-secret', token), 'TIDINGS_UNAUTHORIZED');
  throwsWith(assert, () => tidings.tokenVerify('app-secret-123', 'not a token'), 'TIDINGS_UNAUTHORIZED');
  throwsWith(assert, () => tidings.tokenMint('app-secret-123', '17', -1), 'TIDINGS_INVALID_ARGUMENT');
  throwsWith(assert, () => tidings.tokenMint('app-secret-123', '17', 400 * 86400), 'TIDINGS_INVALID_ARGUMENT');
});
