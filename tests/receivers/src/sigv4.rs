//! Verifies AWS Signature Version 4 as an AWS endpoint does, written from AWS's
//! "Create a signed AWS API request" guide rather than with the SDK's signer, so that a
//! signer bug cannot hide behind the same bug here. `scripts/sigv4_check.py` signs with
//! botocore against it to keep this verifier honest.
//!
//! Checked: the `AWS4-HMAC-SHA256` scheme; the access key; the scope's region and
//! service; the date (within 15 minutes, as AWS allows); the session token for temporary
//! keys; `x-amz-content-sha256` against the body as received; and the signature over the
//! canonical request (path segments encoded again, query parameters decoded, re-encoded
//! and sorted, the signed headers lower-cased and trimmed).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The one key an endpoint accepts.
#[derive(Debug, Clone)]
pub struct SigV4Key {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Required as `x-amz-security-token` when set (temporary credentials).
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
}

/// Checks the request's signature; the error is the message AWS would answer with.
pub fn verify(parts: &http::request::Parts, body: &[u8], key: &SigV4Key) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    verify_at(parts, body, key, now)
}

/// [`verify`] at `now` (seconds since the epoch).
fn verify_at(
    parts: &http::request::Parts,
    body: &[u8],
    key: &SigV4Key,
    now: i64,
) -> Result<(), String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization").ok_or("Missing Authentication Token")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization header requires the AWS4-HMAC-SHA256 algorithm")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {
                return Err(format!(
                    "Authorization header has an unknown field `{field}`"
                ))
            }
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'".into(),
        );
    };
    let scope_parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope_parts[..] else {
        return Err(format!(
            "Credential `{credential}` is not key/date/region/service/aws4_request"
        ));
    };
    if access_key != key.access_key_id {
        return Err("The security token included in the request is invalid.".into());
    }
    if region != key.region || service != key.service {
        return Err(format!(
            "Credential should be scoped to a valid region and service: got {region}/{service}, want {}/{}",
            key.region, key.service
        ));
    }
    let amz_date = header("x-amz-date").ok_or("x-amz-date header is missing")?;
    if !amz_date.starts_with(date) {
        return Err("Credential date does not match x-amz-date".into());
    }
    let signed_at = parse_amz_date(&amz_date).ok_or("x-amz-date is not YYYYMMDDTHHMMSSZ")?;
    if (now - signed_at).abs() > 15 * 60 {
        return Err(format!(
            "Signature expired: {amz_date} is not within 15 minutes of now"
        ));
    }
    if let Some(token) = &key.session_token {
        if header("x-amz-security-token").as_deref() != Some(token.as_str()) {
            return Err("The security token included in the request is invalid.".into());
        }
    }
    let body_hash = hex::encode(Sha256::digest(body));
    let payload_hash = match header("x-amz-content-sha256") {
        Some(claimed) if claimed != body_hash => {
            return Err(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
                    .into(),
            )
        }
        _ => body_hash,
    };
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return Err("SignedHeaders must include host and x-amz-date".into());
    }
    let mut canonical_headers = String::new();
    for name in &signed {
        let value = if *name == "host" {
            header("host").or_else(|| parts.uri.authority().map(|a| a.to_string()))
        } else {
            let values: Vec<String> = parts
                .headers
                .get_all(*name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(trim_all)
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        };
        let value = value.ok_or_else(|| format!("signed header `{name}` is missing"))?;
        canonical_headers.push_str(&format!("{name}:{}\n", trim_all(&value)));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        parts.method,
        canonical_path(parts.uri.path()),
        canonical_query(parts.uri.query().unwrap_or("")),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut signing_key = hmac(
        format!("AWS4{}", key.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [region, service, "aws4_request"] {
        signing_key = hmac(&signing_key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&signing_key, string_to_sign.as_bytes()));
    if expected != signature {
        return Err(format!(
            "The request signature we calculated does not match the signature you provided. \
             The Canonical String for this request should have been\n'{canonical_request}'"
        ));
    }
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `YYYYMMDDTHHMMSSZ` as seconds since the epoch.
fn parse_amz_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Leading and trailing spaces removed, inner runs of spaces made one.
fn trim_all(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// RFC 3986 unreserved characters stay, everything else is `%XX` (upper-case hex).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Services other than S3 sign the path as received, each segment encoded once more.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

fn decode(text: &str) -> std::borrow::Cow<'_, str> {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy()
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (encode(&decode(k)), encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests of AWS's SigV4 test suite (as shipped with the SDKs), signed at
    /// 2015-08-30T12:36:00Z with its example key.
    const SUITE_TIME: i64 = 1_440_938_160;

    fn suite_key(token: Option<&str>) -> SigV4Key {
        SigV4Key {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_string),
            region: "us-east-1".into(),
            service: "service".into(),
        }
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn auth(signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={signature}"
        )
    }

    #[test]
    fn the_suites_signatures_verify_and_altered_ones_do_not() {
        let key = suite_key(None);
        let host = ("host", "example.amazonaws.com");
        let date = ("x-amz-date", "20150830T123600Z");
        let vanilla = auth(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        );
        let parts = request("GET", "/", &[host, date, ("authorization", &vanilla)]);
        verify_at(&parts, b"", &key, SUITE_TIME).unwrap();
        // get-vanilla-query-order-key-case: parameters sorted.
        let ordered = auth(
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        let parts = request(
            "GET",
            "/?Param2=value2&Param1=value1",
            &[host, date, ("authorization", &ordered)],
        );
        verify_at(&parts, b"", &key, SUITE_TIME).unwrap();
        // post-x-www-form-urlencoded: a body and its hash.
        let form = auth(
            "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        );
        let body_hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            host,
            ("content-length", "13"),
            date,
            ("x-amz-content-sha256", body_hash),
            ("authorization", &form),
        ];
        let parts = request("POST", "/", &headers);
        verify_at(&parts, b"Param1=value1", &key, SUITE_TIME).unwrap();
        let err = verify_at(&parts, b"Param1=value2", &key, SUITE_TIME).unwrap_err();
        assert!(err.contains("x-amz-content-sha256"), "{err}");
        // get-vanilla-with-session-token.
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let with_token = auth(
            "host;x-amz-date;x-amz-security-token",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        );
        let parts = request(
            "GET",
            "/",
            &[
                host,
                ("x-amz-security-token", token),
                date,
                ("authorization", &with_token),
            ],
        );
        verify_at(&parts, b"", &suite_key(Some(token)), SUITE_TIME).unwrap();

        // A different path, secret, time or region each fail.
        let parts = request("GET", "/other", &[host, date, ("authorization", &vanilla)]);
        let err = verify_at(&parts, b"", &key, SUITE_TIME).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        let parts = request("GET", "/", &[host, date, ("authorization", &vanilla)]);
        let wrong_secret = SigV4Key {
            secret_access_key: "other".into(),
            ..key.clone()
        };
        assert!(verify_at(&parts, b"", &wrong_secret, SUITE_TIME).is_err());
        let err = verify_at(&parts, b"", &key, SUITE_TIME + 3600).unwrap_err();
        assert!(err.contains("expired"), "{err}");
        let elsewhere = SigV4Key {
            region: "eu-west-1".into(),
            ..key.clone()
        };
        assert!(verify_at(&parts, b"", &elsewhere, SUITE_TIME)
            .unwrap_err()
            .contains("scoped"));
        assert!(verify_at(&parts, b"", &suite_key(Some(token)), SUITE_TIME).is_err());
    }

    #[test]
    fn the_canonical_forms_follow_the_guide() {
        assert_eq!(canonical_query("b=2&a=%2a&a=1&c"), "a=%2A&a=1&b=2&c=");
        assert_eq!(
            canonical_query("filter_path=errors,items.*.status"),
            "filter_path=errors%2Citems.%2A.status"
        );
        assert_eq!(canonical_path("/a b/%2F"), "/a%20b/%252F");
        assert_eq!(trim_all("  a   b  "), "a b");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(SUITE_TIME));
    }
}
