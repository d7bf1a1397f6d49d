//! Keyset pagination: `?limit=` (1–200, default 50) and an opaque `?cursor=` that encodes
//! the sort key of the last row returned. Pages never use OFFSET, so a page deep in a large
//! list costs what the first page costs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A validated page request: fetch `limit` rows whose key sorts after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => l as u32,
            Some(_) => {
                return Err(Error::validation(
                    "limit",
                    "range",
                    format!("limit must be between 1 and {MAX_LIMIT}"),
                ))
            }
        };
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(decode_cursor(c)?),
        };
        Ok(PageRequest { limit, after })
    }

    /// The key after which the page starts, for lists keyed by a number (a sequence, a
    /// version): 400 `cursor` for one that is not.
    pub fn after_number(&self) -> Result<Option<i64>> {
        match self.after.as_deref() {
            None => Ok(None),
            Some(c) => c.parse().map(Some).map_err(|_| {
                Error::validation("cursor", "valid", "the cursor is not one this list issued")
            }),
        }
    }
}

pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let bad = || Error::validation("cursor", "invalid", "cursor is not one this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    if key.is_empty() || key.len() > 256 {
        return Err(bad());
    }
    Ok(key)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pagination {
    pub cursor: Option<String>,
    pub has_more: bool,
    pub total: i64,
}

/// `{"data": [...], "pagination": {...}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in key order: the extra row, if
    /// present, only tells that more exist.
    pub fn from_rows(
        mut rows: Vec<T>,
        req: &PageRequest,
        total: i64,
        key: impl Fn(&T) -> String,
    ) -> Self {
        let has_more = rows.len() > req.limit as usize;
        rows.truncate(req.limit as usize);
        let cursor = if has_more {
            rows.last().map(|r| encode_cursor(&key(r)))
        } else {
            None
        };
        Page {
            data: rows,
            pagination: Pagination {
                cursor,
                has_more,
                total,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        assert_eq!(PageRequest::parse(Some(200), None).unwrap().limit, 200);
        for bad in [0, -1, 201] {
            let e = PageRequest::parse(Some(bad), None).unwrap_err();
            assert_eq!(e.details["field"], "limit");
        }
        let c = encode_cursor("usr_01abc");
        assert_eq!(
            PageRequest::parse(None, Some(&c)).unwrap().after.as_deref(),
            Some("usr_01abc")
        );
        assert_eq!(
            PageRequest::parse(None, Some("!!")).unwrap_err().details["field"],
            "cursor"
        );
    }

    #[test]
    fn page_from_rows() {
        let req = PageRequest {
            limit: 2,
            after: None,
        };
        let page = Page::from_rows(vec!["a", "b", "c"], &req, 3, |s| s.to_string());
        assert_eq!(page.data, vec!["a", "b"]);
        assert!(page.pagination.has_more);
        assert_eq!(page.pagination.cursor, Some(encode_cursor("b")));
        let last = Page::from_rows(vec!["c"], &req, 3, |s| s.to_string());
        assert!(!last.pagination.has_more && last.pagination.cursor.is_none());
    }
}
