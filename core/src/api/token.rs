//! User tokens. Being written.
