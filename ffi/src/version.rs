//! Versions: the crate's (`TIDINGS_VERSION_*`) and the ABI's.

use std::ffi::c_char;

/// The major version of tidings (the `tidings-ffi` crate).
pub const TIDINGS_VERSION_MAJOR: u32 = 0;
/// The minor version of tidings.
pub const TIDINGS_VERSION_MINOR: u32 = 1;
/// The patch version of tidings.
pub const TIDINGS_VERSION_PATCH: u32 = 0;

/// The major version of the C ABI: a host built against another major must
/// not use this library (the bindings refuse it at load).
pub const TIDINGS_ABI_VERSION_MAJOR: u32 = 1;
/// The minor version of the C ABI: grows when functions or statuses are
/// added; a host built against an older minor works unchanged.
pub const TIDINGS_ABI_VERSION_MINOR: u32 = 0;
/// `(major << 16) | minor`, what `tidings_abi_version()` returns.
pub const TIDINGS_ABI_VERSION: u32 = (TIDINGS_ABI_VERSION_MAJOR << 16) | TIDINGS_ABI_VERSION_MINOR;

/// The ABI version of the loaded library, `(major << 16) | minor`. A host
/// compares `tidings_abi_version() >> 16` with `TIDINGS_ABI_VERSION_MAJOR`.
#[no_mangle]
pub extern "C" fn tidings_abi_version() -> u32 {
    TIDINGS_ABI_VERSION
}

/// The version of the loaded library, such as `"0.1.0"`. Static: do not free.
#[no_mangle]
pub extern "C" fn tidings_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_cargo() {
        assert_eq!(
            TIDINGS_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            TIDINGS_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            TIDINGS_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        assert_eq!(tidings_abi_version() >> 16, TIDINGS_ABI_VERSION_MAJOR);
    }
}
