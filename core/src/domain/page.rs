//! Cursor pagination, newest first.

use serde::{Deserialize, Serialize};

use super::ids::Seq;
use crate::error::{Error, Result};

pub const DEFAULT_PAGE_LIMIT: u32 = 50;
pub const MAX_PAGE_LIMIT: u32 = 100;

/// Which page of a conversation's history: up to `limit` messages with a
/// seq below `before` (or the newest when `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRequest {
    #[serde(default)]
    pub before: Option<Seq>,
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    DEFAULT_PAGE_LIMIT
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            before: None,
            limit: DEFAULT_PAGE_LIMIT,
        }
    }
}

impl PageRequest {
    pub fn newest(limit: u32) -> Self {
        PageRequest {
            before: None,
            limit,
        }
    }

    pub fn before(seq: Seq, limit: u32) -> Self {
        PageRequest {
            before: Some(seq),
            limit,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_PAGE_LIMIT).contains(&self.limit) {
            return Err(Error::invalid(format!(
                "limit must be 1-{MAX_PAGE_LIMIT}, got {}",
                self.limit
            )));
        }
        if let Some(before) = self.before {
            if before < 1 {
                return Err(Error::invalid(format!(
                    "before must be a seq of 1 or more, got {before}"
                )));
            }
        }
        Ok(())
    }
}

/// One page, newest first; `next_before` is the cursor of the next (older)
/// page, `None` on the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<Seq>,
}
