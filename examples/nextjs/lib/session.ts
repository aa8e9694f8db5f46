// Who is signed in. A stand-in for the app's real authentication (NextAuth,
// a session cookie...): the `x-user-id` header, or else the `tidings_user`
// cookie. Replace currentUser() with your own session lookup; the routes
// only need the signed-in user's id.
const USER_ID = /^[A-Za-z0-9_=@,.;-]{1,64}$/;

export const USER_HEADER = 'x-user-id';
export const USER_COOKIE = 'tidings_user';

export function currentUser(req: Request): string | null {
  const header = req.headers.get(USER_HEADER);
  if (header) return USER_ID.test(header) ? header : null;
  for (const part of (req.headers.get('cookie') || '').split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === USER_COOKIE) {
      const value = decodeURIComponent(rest.join('='));
      return USER_ID.test(value) ? value : null;
    }
  }
  return null;
}
