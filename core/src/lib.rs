pub mod domain;
pub mod error;
pub mod event;
pub mod store;
pub mod transport;
pub use error::{Error, ErrorKind, Result};
