//! The chat model: ids, messages, read state. Pure data and rules, no I/O.

pub mod ids;
pub mod message;
pub mod page;
pub mod read_state;

pub use ids::{ConversationId, MessageId, Seq, UserId};
pub use message::{Message, NewMessage, Reaction};
pub use page::{Page, PageRequest};
pub use read_state::{InboxEntry, ReadState};
