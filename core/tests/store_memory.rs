//! The store conformance suite on the in-memory backend.

tidings::store_conformance!(async { tidings::store::open("memory:").await.expect("memory store") });
