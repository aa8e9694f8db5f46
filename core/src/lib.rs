pub mod domain;
pub mod error;
pub mod event;
pub mod store;
pub mod transport;
pub use error::{Error, ErrorKind, Result};
pub use domain::{
    ConversationId, InboxEntry, Message, MessageId, NewMessage, Page, PageRequest, Reaction,
    ReadState, Seq, UserId,
};
