//! The tenant of a request, for every API: `X-Scope-OrgID` (Cortex', Mimir's and Loki's
//! header), or for the JSON API's and seed 001's reads a `tenant_id` parameter, which must
//! agree with the header when both are given. One parser; each API words the errors in its
//! own error shape ([`crate::error::ApiError`], [`crate::promapi::PromError`]).

use axum::http::HeaderMap;

/// The header, lower-cased as `HeaderMap` stores names.
pub const HEADER: &str = "x-scope-orgid";

/// What a valid tenant id is, for error messages.
pub const RULE: &str = "use 1 to 128 characters of [a-zA-Z0-9_.-]";

/// Why a request's tenant is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantError {
    /// The header is not a valid tenant id.
    Header,
    /// The `tenant_id` parameter is not a valid tenant id.
    Param,
    /// Parameter and header name different tenants.
    Mismatch,
}

impl TenantError {
    /// The request field at fault.
    pub fn field(self) -> &'static str {
        match self {
            TenantError::Header => "X-Scope-OrgID",
            TenantError::Param | TenantError::Mismatch => "tenant_id",
        }
    }

    /// What is wrong with it.
    pub fn message(self) -> String {
        match self {
            TenantError::Header => format!("invalid tenant id: {RULE}"),
            TenantError::Param => "invalid tenant id".into(),
            TenantError::Mismatch => "tenant_id differs from the X-Scope-OrgID header".into(),
        }
    }
}

/// The tenant named by the header, if there is one.
pub fn from_header(h: &HeaderMap) -> Result<Option<String>, TenantError> {
    match h.get(HEADER) {
        None => Ok(None),
        Some(v) => {
            let t = v.to_str().unwrap_or("");
            if metricsd_tsdb::is_valid_tenant(t) {
                Ok(Some(t.to_owned()))
            } else {
                Err(TenantError::Header)
            }
        }
    }
}

/// The tenant of a request: the header's, else the default tenant.
pub fn of_request(h: &HeaderMap) -> Result<String, TenantError> {
    Ok(from_header(h)?.unwrap_or_else(|| metricsd_tsdb::DEFAULT_TENANT.to_owned()))
}

/// The tenant of a read that may also name it by parameter (`param`; empty = absent): both
/// must agree; neither means the default tenant. The header is checked first.
pub fn of_read(h: &HeaderMap, param: Option<&str>) -> Result<String, TenantError> {
    let header = from_header(h)?;
    match (param.filter(|p| !p.is_empty()), header) {
        (Some(p), _) if !metricsd_tsdb::is_valid_tenant(p) => Err(TenantError::Param),
        (Some(p), Some(hd)) if p != hd => Err(TenantError::Mismatch),
        (Some(p), _) => Ok(p.to_owned()),
        (None, Some(hd)) => Ok(hd),
        (None, None) => Ok(metricsd_tsdb::DEFAULT_TENANT.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(v) = v {
            m.insert(HEADER, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn header_parameter_and_default() {
        assert_eq!(of_request(&h(None)).unwrap(), "default");
        assert_eq!(of_request(&h(Some("team-a"))).unwrap(), "team-a");
        assert_eq!(of_request(&h(Some("a/b"))), Err(TenantError::Header));
        assert_eq!(of_read(&h(None), Some("t1")).unwrap(), "t1");
        assert_eq!(of_read(&h(None), Some("")).unwrap(), "default");
        assert_eq!(of_read(&h(Some("t1")), Some("t1")).unwrap(), "t1");
        assert_eq!(of_read(&h(Some("t1")), Some("t2")), Err(TenantError::Mismatch));
        assert_eq!(of_read(&h(Some("t1")), Some("..")), Err(TenantError::Param));
        assert_eq!(of_read(&h(Some("x y")), Some("t1")), Err(TenantError::Header));
    }
}
