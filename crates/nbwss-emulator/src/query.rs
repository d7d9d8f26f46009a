//! Query strings decoded the way real clients encode them: keys and values fully percent-decoded
//! (`page%5Blimit%5D`, `page%5blimit%5d`), `+` as a space; and the offset pagination envelope.

use std::collections::HashMap;

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

/// The decoded query parameters of a request (the last value of a repeated key wins).
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    values: HashMap<String, String>,
}

fn decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// The longest query string accepted, in bytes: room for the longest filter fully percent-encoded and the
/// paging parameters, so that decoding a query is always cheap.
pub(crate) const MAX_QUERY_BYTES: usize = 3 * crate::filter::MAX_FILTER_BYTES + 1024;

impl Params {
    /// Decodes a query string (400 when longer than [`MAX_QUERY_BYTES`]).
    pub(crate) fn parse(query: Option<&str>) -> ApiResult<Self> {
        let query = query.unwrap_or_default();
        if query.len() > MAX_QUERY_BYTES {
            return Err(ApiError::bad_request(format!(
                "The query string is {} bytes long, more than the maximum {MAX_QUERY_BYTES}.",
                query.len()
            )));
        }
        let mut values = HashMap::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            values.insert(decode(key), decode(value));
        }
        Ok(Self { values })
    }

    /// The value of `key`; a parameter given with an empty value (`filter=`, `page[after]=`) counts as not
    /// given, as clients that fill a template leave unused parameters empty.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str).filter(|value| !value.is_empty())
    }

    /// A boolean parameter (`true` / `false`), `None` when absent; 400 otherwise.
    pub(crate) fn flag(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_attribute(key, format!("{other:?} is not true or false"))),
        }
    }

    /// A non-negative integer parameter, or `default` when absent; 400 when not a number or above `max`.
    pub(crate) fn integer(&self, key: &str, default: u64, max: u64) -> ApiResult<u64> {
        let Some(text) = self.get(key) else { return Ok(default) };
        let value: u64 = text
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_attribute(key, format!("{text:?} is not a non-negative integer")))?;
        if value > max {
            return Err(ApiError::bad_attribute(key, format!("{value} is more than the maximum {max}")));
        }
        Ok(value)
    }
}

/// Offset pagination of a list: which slice to show and the `meta.pagination` / `links` to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OffsetPage {
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

impl OffsetPage {
    /// Reads `page[offset]` and `page[limit]` (default 10; 400 above `max_limit` or below `min_limit`).
    pub(crate) fn from_params(params: &Params, min_limit: u64, max_limit: u64) -> ApiResult<Self> {
        Self::from_params_with_default(params, min_limit, max_limit, 10)
    }

    /// As [`OffsetPage::from_params`], with another default limit.
    pub(crate) fn from_params_with_default(
        params: &Params,
        min_limit: u64,
        max_limit: u64,
        default_limit: u64,
    ) -> ApiResult<Self> {
        let limit = params.integer("page[limit]", default_limit, max_limit)?;
        if limit < min_limit {
            return Err(ApiError::bad_attribute("page[limit]", format!("must be at least {min_limit}")));
        }
        let offset = params.integer("page[offset]", 0, u64::MAX)?;
        Ok(Self {
            offset: usize::try_from(offset).unwrap_or(usize::MAX),
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    /// Takes this page out of `items` and builds the collection envelope around `render`ed items.
    pub(crate) fn envelope<T>(
        &self,
        items: Vec<T>,
        base: &str,
        render: impl Fn(&T) -> Value,
        extra_query: &str,
    ) -> Value {
        let count = items.len();
        let data: Vec<Value> = items.iter().skip(self.offset).take(self.limit).map(render).collect();
        self.envelope_of_page(count, data, base, extra_query)
    }

    /// The collection envelope around `data`, this page of a list of `count` items already taken out and
    /// rendered by the caller.
    pub(crate) fn envelope_of_page(
        &self,
        count: usize,
        data: Vec<Value>,
        base: &str,
        extra_query: &str,
    ) -> Value {
        let limit = self.limit.max(1);
        let last = if count == 0 { 0 } else { ((count - 1) / limit) * limit };
        let pages = count.div_ceil(limit).max(1);
        let link = |offset: usize| json!({"href": format!("{base}?page[offset]={offset}&page[limit]={}{extra_query}", self.limit)});
        let mut pagination = json!({
            "offset": self.offset,
            "limit": self.limit,
            "count": count,
            "first": 0,
            "last": last,
            "page": self.offset / limit,
            "pages": pages,
        });
        let mut links = json!({"self": link(self.offset), "first": link(0), "last": link(last)});
        if self.offset + self.limit < count {
            pagination["next"] = json!(self.offset + self.limit);
            links["next"] = link(self.offset + self.limit);
        }
        if self.offset > 0 {
            let prev = self.offset.saturating_sub(self.limit);
            pagination["prev"] = json!(prev);
            links["prev"] = link(prev);
        }
        json!({"data": data, "links": links, "meta": {"pagination": pagination}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_keys_and_values() {
        let params =
            Params::parse(Some("filter=jobType+eq+%27BACKUP%27&page%5blimit%5d=10&page%5Boffset%5D=5"))
                .unwrap();
        assert_eq!(params.get("filter"), Some("jobType eq 'BACKUP'"));
        assert_eq!(params.get("page[limit]"), Some("10"));
        assert_eq!(params.get("page[offset]"), Some("5"));
        let params = Params::parse(Some("filter=clientName%20eq%20'c1'&page[limit]=3")).unwrap();
        assert_eq!(params.get("filter"), Some("clientName eq 'c1'"));
        assert_eq!(params.integer("page[limit]", 10, 100).unwrap(), 3);
    }

    #[test]
    fn rejects_bad_limits() {
        let params = Params::parse(Some("page[limit]=100000")).unwrap();
        assert_eq!(params.integer("page[limit]", 10, 100).unwrap_err().status.as_u16(), 400);
        let params = Params::parse(Some("page[limit]=-1")).unwrap();
        assert!(params.integer("page[limit]", 10, 100).is_err());
    }

    #[test]
    fn refuses_overlong_queries_and_decodes_anything_else() {
        let long = "a".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(Params::parse(Some(&long)).unwrap_err().status.as_u16(), 400);
        let params = Params::parse(Some("%ZZ=%C3%28&&=&filter=%C2%85&x")).unwrap();
        assert_eq!(params.get("%ZZ"), Some("\u{fffd}("));
        assert_eq!(params.get("filter"), Some("\u{85}"));
        assert_eq!(params.get("x"), None, "an empty value is no value");
    }

    #[test]
    fn builds_offset_pagination() {
        let page = OffsetPage { offset: 10, limit: 10 };
        let body = page.envelope((0..25).collect(), "/x", |n| json!(n), "");
        let pagination = &body["meta"]["pagination"];
        assert_eq!(body["data"].as_array().unwrap().len(), 10);
        assert_eq!(pagination["count"], 25);
        assert_eq!(pagination["next"], 20);
        assert_eq!(pagination["prev"], 0);
        assert_eq!(pagination["last"], 20);
        assert_eq!(pagination["page"], 1);
        assert_eq!(pagination["pages"], 3);
    }
}
