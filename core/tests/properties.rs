//! Property tests of everything a client can put in a request: user ids,
//! conversation ids, channel names, user tokens and signed-request
//! timestamps. None of them may panic, whatever the input; valid values
//! round-trip.

use proptest::prelude::*;
use tidings::api::token;
use tidings::broker::channel;
use tidings::domain::ids::{MAX_CHANNEL_LEN, MAX_USER_ID_LEN};
use tidings::signature;
use tidings::{ConversationId, UserId};

const SECRET: &str = "properties-secret-0123456789abcdef";

/// Any text: ASCII, multibyte characters, controls, long or empty.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        ".{100,300}",
        "[A-Za-z0-9_=@,.;-]{0,200}",
        "[0-9a-z=DX-]{0,20}",
    ]
}

/// A valid user id: 1-128 characters of the channel alphabet.
fn user_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,12}",
        "[a-z]{1,10}",
        "[A-Za-z0-9_=@,.;-]{1,40}",
        "[A-Za-z0-9_=@,.;-]{100,128}",
    ]
}

/// Two different valid user ids.
fn two_users() -> impl Strategy<Value = (UserId, UserId)> {
    (user_id(), user_id())
        .prop_filter("two different users", |(a, b)| a != b)
        .prop_map(|(a, b)| {
            (
                UserId::new(a).expect("valid"),
                UserId::new(b).expect("valid"),
            )
        })
}

proptest! {
    #[test]
    fn user_ids_never_panic(text in any_text()) {
        match UserId::new(text.clone()) {
            Ok(id) => {
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert!(text.len() <= MAX_USER_ID_LEN);
            }
            Err(err) => prop_assert!(!err.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_user_ids_round_trip(text in user_id()) {
        let id = UserId::new(text.clone()).unwrap();
        prop_assert_eq!(id.as_str(), text.as_str());
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id.clone());
        prop_assert_eq!(text.parse::<UserId>().unwrap(), id);
    }

    /// The panic this suite was written for: a long id with a multibyte
    /// character where the error message cuts it.
    #[test]
    fn long_ids_with_multibyte_characters_are_errors(
        head in "[a-z]{0,20}",
        wide in "[é€😀ß中]{1,3}",
        tail in ".{100,200}",
    ) {
        let text = format!("{head}{wide}{tail}");
        prop_assume!(text.len() > MAX_USER_ID_LEN);
        let err = UserId::new(text).unwrap_err().to_string();
        prop_assert!(err.contains("bytes long"), "{}", err);
    }

    #[test]
    fn conversation_ids_never_panic(text in any_text()) {
        if let Ok(conversation) = ConversationId::parse(&text) {
            prop_assert_eq!(conversation.as_str(), text.as_str());
            let (lo, hi) = conversation.users();
            prop_assert_eq!(ConversationId::between(hi, lo).unwrap(), conversation.clone());
        }
    }

    #[test]
    fn conversations_round_trip((a, b) in two_users()) {
        let Ok(conversation) = ConversationId::between(&a, &b) else {
            // Only ids too long together for a channel name are refused.
            let (a_len, b_len) = (a.as_str().len(), b.as_str().len());
            prop_assert!(a_len + b_len > 40, "{:?} {:?}", a, b);
            return Ok(());
        };
        prop_assert_eq!(ConversationId::between(&b, &a).unwrap(), conversation.clone());
        prop_assert_eq!(ConversationId::parse(conversation.as_str()).unwrap(), conversation.clone());
        prop_assert!(conversation.has_member(&a) && conversation.has_member(&b));
        prop_assert_eq!(conversation.peer_of(&a), Some(&b));
        let (lo, hi) = conversation.users();
        prop_assert!(lo.conversation_order(hi).is_lt());
        for name in [conversation.channel(), conversation.presence_channel()] {
            prop_assert!(name.len() <= MAX_CHANNEL_LEN, "{}", name);
            prop_assert_eq!(channel::validate(&name), Ok(()));
            prop_assert_eq!(ConversationId::from_channel(&name), Some(conversation.clone()));
        }
    }

    #[test]
    fn different_pairs_give_different_conversations(
        (a, b) in two_users(),
        (c, d) in two_users(),
    ) {
        let same_pair = (a == c && b == d) || (a == d && b == c);
        if let (Ok(x), Ok(y)) = (ConversationId::between(&a, &b), ConversationId::between(&c, &d)) {
            prop_assert_eq!(x == y, same_pair);
        }
    }

    #[test]
    fn channel_names_never_panic(text in any_text(), prefix in prop_oneof![
        Just(""),
        Just("private-conversation-"),
        Just("presence-conversation-"),
        Just("#server-to-user-"),
        Just("#"),
    ]) {
        let name = format!("{prefix}{text}");
        let _ = channel::validate(&name);
        if let Some(conversation) = ConversationId::from_channel(&name) {
            prop_assert!(name.ends_with(conversation.as_str()));
        }
    }

    #[test]
    fn tokens_never_panic(text in any_text(), now in any::<i64>()) {
        let _ = token::verify(SECRET, &text, now);
        let _ = token::verify(SECRET, &format!("v1.{text}"), now);
        let _ = token::verify(SECRET, &format!("v1.{text}.{text}"), now);
    }

    #[test]
    fn minted_tokens_verify_and_any_change_is_refused(
        user in user_id(),
        exp in 1i64..i64::MAX,
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
    ) {
        let minted = token::mint_until(SECRET, &user, exp).unwrap();
        prop_assert!(minted.len() <= token::MAX_TOKEN_LEN);
        let claims = token::verify(SECRET, &minted, exp - 1).unwrap();
        prop_assert_eq!(claims.user.as_str(), user.as_str());
        prop_assert_eq!(claims.exp, exp);
        let expired = token::verify(SECRET, &minted, exp);
        let is_expired = matches!(expired, Err(token::TokenError::Expired { .. }));
        prop_assert!(is_expired, "{:?}", expired);
        // Any one character replaced: never a valid token.
        let chars: Vec<char> = minted.chars().collect();
        let at = position.index(chars.len());
        prop_assume!(chars[at] != replacement);
        let mut changed = chars;
        changed[at] = replacement;
        let changed: String = changed.into_iter().collect();
        prop_assert!(token::verify(SECRET, &changed, exp - 1).is_err(), "{}", changed);
    }

    #[test]
    fn signed_request_timestamps_never_panic(timestamp in any::<i64>(), now in any::<i64>()) {
        let params = vec![
            ("auth_key".to_owned(), "key".to_owned()),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("auth_signature".to_owned(), "x".to_owned()),
        ];
        let _ = signature::verify_request(SECRET, "GET", "/v1/me", &params, b"", now);
    }
}
