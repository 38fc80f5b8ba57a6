//! Cursor pagination: `page[size]`, `page[cursor]`, and `links.{self,next,prev}`.
//!
//! Cursors are opaque to clients: base64url (no padding) of a small JSON
//! object `{"v":1,"k":<sort key>,"i":<id>,"d":"n"|"p"}`. A handler queries
//! rows strictly after (`Next`) or before (`Prev`) `(key, id)` in its sort
//! order and hands them to [`Page::from_rows`], which works out the links.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::jsonapi::{list_document, PageLinks, RequestUrl, Resource};

/// Default and maximum `page[size]` of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSpec {
    pub default: u32,
    pub max: u32,
}

// From the `page[size]` parameters (or descriptions) of the 2026-07-15 OpenAPI.
/// GET /api/profiles: default 20, max 100.
pub const PROFILES_PAGE: PageSpec = PageSpec {
    default: 20,
    max: 100,
};
/// GET /api/lists/{id}/profiles and …/relationships/profiles: default 20, max 100.
pub const LIST_PROFILES_PAGE: PageSpec = PageSpec {
    default: 20,
    max: 100,
};
/// GET /api/segments/{id}/profiles: default 20, max 100.
pub const SEGMENT_PROFILES_PAGE: PageSpec = PageSpec {
    default: 20,
    max: 100,
};
/// GET /api/lists: default 10, max 10.
pub const LISTS_PAGE: PageSpec = PageSpec {
    default: 10,
    max: 10,
};
/// GET /api/segments: default 10, max 10.
pub const SEGMENTS_PAGE: PageSpec = PageSpec {
    default: 10,
    max: 10,
};
/// GET /api/events: default 200, max 1000.
pub const EVENTS_PAGE: PageSpec = PageSpec {
    default: 200,
    max: 1000,
};
/// GET /api/metrics: no `page[size]` in the spec; "a maximum of 200 results per page".
pub const METRICS_PAGE: PageSpec = PageSpec {
    default: 200,
    max: 200,
};
/// GET /api/catalog-items: default 100, max 100.
pub const CATALOG_ITEMS_PAGE: PageSpec = PageSpec {
    default: 100,
    max: 100,
};
/// GET /api/catalog-variants: default 100, max 100.
pub const CATALOG_VARIANTS_PAGE: PageSpec = PageSpec {
    default: 100,
    max: 100,
};
/// GET /api/flows: default 50, max 50.
pub const FLOWS_PAGE: PageSpec = PageSpec {
    default: 50,
    max: 50,
};
/// GET /api/flows/{id}/flow-actions: default 50, max 50.
pub const FLOW_ACTIONS_PAGE: PageSpec = PageSpec {
    default: 50,
    max: 50,
};

/// Longest `page[cursor]` accepted, before decoding.
const MAX_CURSOR_LEN: usize = 2048;

/// Which side of the cursor position the page lies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rows after `(key, id)` in sort order.
    Next,
    /// Rows before `(key, id)` in sort order.
    Prev,
}

/// A position in a sorted listing: the sort key and id of a boundary row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The boundary row's sort key, formatted by the handler (e.g. RFC 3339 time).
    pub key: String,
    /// The boundary row's id, the tie-breaker.
    pub id: String,
    pub direction: Direction,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    k: String,
    i: String,
    d: String,
}

impl Cursor {
    pub fn next(key: impl Into<String>, id: impl Into<String>) -> Cursor {
        Cursor {
            key: key.into(),
            id: id.into(),
            direction: Direction::Next,
        }
    }

    pub fn prev(key: impl Into<String>, id: impl Into<String>) -> Cursor {
        Cursor {
            key: key.into(),
            id: id.into(),
            direction: Direction::Prev,
        }
    }

    /// The opaque, URL-safe form.
    pub fn encode(&self) -> String {
        let wire = Wire {
            v: 1,
            k: self.key.clone(),
            i: self.id.clone(),
            d: match self.direction {
                Direction::Next => "n".into(),
                Direction::Prev => "p".into(),
            },
        };
        // Serializing a struct of strings cannot fail.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor, tolerating what real clients send: the whole
    /// `links.next` URL (the Python SDK only strips `https://` links), a
    /// leading `=`, padding, or the standard base64 alphabet.
    pub fn decode(raw: &str) -> Result<Cursor, ApiError> {
        let bad = || ApiError::invalid_parameter("page[cursor]", "Invalid page cursor.");
        if raw.len() > MAX_CURSOR_LEN {
            return Err(bad());
        }
        let token = extract_from_url(raw.trim());
        let token = token.trim_start_matches('=').trim_end_matches('=');
        let normalized: String = token
            .chars()
            .map(|c| match c {
                '+' | ' ' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        let bytes = URL_SAFE_NO_PAD.decode(normalized).map_err(|_| bad())?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let direction = match (wire.v, wire.d.as_str()) {
            (1, "n") => Direction::Next,
            (1, "p") => Direction::Prev,
            _ => return Err(bad()),
        };
        Ok(Cursor {
            key: wire.k,
            id: wire.i,
            direction,
        })
    }
}

/// If `raw` is a URL (or query) carrying `page[cursor]=`, returns that value.
fn extract_from_url(raw: &str) -> String {
    let Some((_, query)) = raw.split_once('?') else {
        return raw.to_owned();
    };
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "page[cursor]")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| raw.to_owned())
}

/// Validated `page[size]` and `page[cursor]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageParams {
    pub size: u32,
    pub cursor: Option<Cursor>,
}

impl PageParams {
    /// Validates raw parameter values: size must be an integer in `1..=spec.max`.
    pub fn parse(
        size: Option<&str>,
        cursor: Option<&str>,
        spec: PageSpec,
    ) -> Result<PageParams, ApiError> {
        let size = match size.map(str::trim) {
            None | Some("") => spec.default,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=spec.max).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid_parameter(
                        "page[size]",
                        format!(
                            "Invalid page size '{}'. Must be an integer between 1 and {}.",
                            crate::error::truncate(s, 32),
                            spec.max
                        ),
                    ))
                }
            },
        };
        let cursor = match cursor.map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(Cursor::decode(c)?),
        };
        Ok(PageParams { size, cursor })
    }

    /// How many rows to fetch: one extra tells whether another page exists.
    pub fn fetch_limit(&self) -> usize {
        self.size as usize + 1
    }

    /// Direction to query in (`Next` when there is no cursor).
    pub fn direction(&self) -> Direction {
        self.cursor
            .as_ref()
            .map_or(Direction::Next, |c| c.direction)
    }
}

/// One page of results and the cursors around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `params.fetch_limit()` rows.
    ///
    /// For `Direction::Next` (or no cursor) rows must be in page order, after
    /// the cursor. For `Direction::Prev` they must be in *reverse* order,
    /// nearest the cursor first (i.e. the query's sort flipped); they are
    /// reversed here. `key_of` returns a row's `(sort key, id)`.
    pub fn from_rows<F>(mut rows: Vec<T>, params: &PageParams, key_of: F) -> Page<T>
    where
        F: Fn(&T) -> (String, String),
    {
        let size = params.size as usize;
        let has_more = rows.len() > size;
        rows.truncate(size);
        let cursor_at = |row: Option<&T>, make: fn(String, String) -> Cursor| {
            row.map(|r| {
                let (k, i) = key_of(r);
                make(k, i)
            })
        };
        match params.direction() {
            Direction::Next => {
                let next = if has_more {
                    cursor_at(rows.last(), Cursor::next)
                } else {
                    None
                };
                let prev = if params.cursor.is_some() {
                    cursor_at(rows.first(), Cursor::prev)
                } else {
                    None
                };
                Page {
                    items: rows,
                    next,
                    prev,
                }
            }
            Direction::Prev => {
                rows.reverse();
                let next = cursor_at(rows.last(), Cursor::next);
                let prev = if has_more {
                    cursor_at(rows.first(), Cursor::prev)
                } else {
                    None
                };
                Page {
                    items: rows,
                    next,
                    prev,
                }
            }
        }
    }

    /// Converts the items, keeping the cursors.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
            prev: self.prev,
        }
    }

    /// `links.self` is the request URL; `next`/`prev` replace `page[cursor]`.
    pub fn links(&self, url: &RequestUrl) -> PageLinks {
        let link = |c: &Option<Cursor>| {
            c.as_ref()
                .map(|c| url.with_param("page[cursor]", Some(&c.encode())))
        };
        PageLinks {
            self_link: url.href(),
            next: link(&self.next),
            prev: link(&self.prev),
        }
    }
}

impl Page<Resource> {
    /// The list document `{"data": [...], "links": {self, next, prev}}`.
    pub fn into_document(self, url: &RequestUrl, included: &[Resource]) -> Value {
        list_document(&self.items, &self.links(url), included)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderMap, HeaderValue, Uri};

    fn url(pq: &str) -> RequestUrl {
        let uri: Uri = pq.parse().expect("uri");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("localhost:8080"));
        RequestUrl::from_request(&uri, &h, None)
    }

    #[test]
    fn cursor_round_trip_and_is_url_safe() {
        let c = Cursor::next("2024-01-01T00:00:00Z", "01H|x/é");
        let enc = c.encode();
        assert!(enc
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
        assert_eq!(Cursor::decode(&enc).expect("ok"), c);
        let p = Cursor::prev("k", "i");
        assert_eq!(Cursor::decode(&p.encode()).expect("ok"), p);
    }

    #[test]
    fn cursor_decode_tolerates_sdk_forms() {
        let c = Cursor::next("k", "id1");
        let enc = c.encode();
        let full =
            format!("http://localhost:8080/api/profiles/?page%5Bsize%5D=2&page%5Bcursor%5D={enc}");
        assert_eq!(Cursor::decode(&full).expect("url"), c);
        assert_eq!(Cursor::decode(&format!("={enc}")).expect("eq"), c);
        let std = base64::engine::general_purpose::STANDARD
            .encode(URL_SAFE_NO_PAD.decode(&enc).expect("b64"));
        assert_eq!(Cursor::decode(&std).expect("std"), c);
    }

    #[test]
    fn cursor_decode_rejects_garbage() {
        for bad in [
            "",
            "!!!",
            "bm9wZQ",
            &"A".repeat(5000),
            &URL_SAFE_NO_PAD.encode(br#"{"v":2,"k":"","i":"","d":"n"}"#),
        ] {
            let e = Cursor::decode(bad).expect_err("bad");
            assert_eq!(
                e.to_body()["errors"][0]["source"]["parameter"],
                "page[cursor]"
            );
        }
    }

    #[test]
    fn page_size_validation() {
        let p = PageParams::parse(None, None, PROFILES_PAGE).expect("ok");
        assert_eq!((p.size, p.cursor), (20, None));
        assert_eq!(
            PageParams::parse(Some("100"), None, PROFILES_PAGE)
                .expect("ok")
                .size,
            100
        );
        for bad in ["0", "101", "-1", "abc", "1.5"] {
            let e = PageParams::parse(Some(bad), None, PROFILES_PAGE).expect_err(bad);
            assert_eq!(
                e.to_body()["errors"][0]["source"]["parameter"],
                "page[size]"
            );
        }
        assert!(PageParams::parse(Some("11"), None, LISTS_PAGE).is_err());
        assert_eq!(
            PageParams::parse(Some("1000"), None, EVENTS_PAGE)
                .expect("ok")
                .size,
            1000
        );
    }

    fn key(r: &u32) -> (String, String) {
        (format!("{r:04}"), r.to_string())
    }

    #[test]
    fn forward_paging() {
        let first = PageParams {
            size: 2,
            cursor: None,
        };
        let page = Page::from_rows(vec![1, 2, 3], &first, key);
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.next, Some(Cursor::next("0002", "2")));
        assert_eq!(page.prev, None);

        let second = PageParams {
            size: 2,
            cursor: page.next.clone(),
        };
        let page = Page::from_rows(vec![3], &second, key);
        assert_eq!(page.items, [3]);
        assert_eq!(page.next, None);
        assert_eq!(page.prev, Some(Cursor::prev("0003", "3")));
    }

    #[test]
    fn backward_paging() {
        // Going back from item 5 with size 2: query returns 4,3,2 (nearest first).
        let params = PageParams {
            size: 2,
            cursor: Some(Cursor::prev("0005", "5")),
        };
        let page = Page::from_rows(vec![4, 3, 2], &params, key);
        assert_eq!(page.items, [3, 4]);
        assert_eq!(page.prev, Some(Cursor::prev("0003", "3")));
        assert_eq!(page.next, Some(Cursor::next("0004", "4")));
        let page = Page::from_rows(
            vec![2, 1],
            &PageParams {
                size: 2,
                cursor: page.prev,
            },
            key,
        );
        assert_eq!(page.items, [1, 2]);
        assert_eq!(page.prev, None);
    }

    #[test]
    fn links_replace_cursor_and_keep_params() {
        let u = url("/api/profiles/?page%5Bsize%5D=2&page%5Bcursor%5D=old&filter=has(email)");
        let page = Page {
            items: vec![1u32],
            next: Some(Cursor::next("k", "i")),
            prev: None,
        };
        let links = page.links(&u);
        assert_eq!(links.self_link, u.href());
        let next = links.next.expect("next");
        assert!(next.starts_with("http://localhost:8080/api/profiles/?page%5Bsize%5D=2&filter=has(email)&page%5Bcursor%5D="));
        assert_eq!(
            Cursor::decode(&next).expect("decode"),
            Cursor::next("k", "i")
        );
        assert_eq!(links.prev, None);

        let doc = page
            .map(|n| Resource::new(&u, "profile", n.to_string(), serde_json::json!({})))
            .into_document(&u, &[]);
        assert_eq!(doc["data"][0]["id"], "1");
        assert_eq!(doc["links"]["prev"], Value::Null);
        assert!(doc["links"]["next"].is_string());
    }
}
