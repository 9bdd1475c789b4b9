//! AWS Security Hub's `BatchImportFindings`, and STS's `GetCallerIdentity` beside it, as
//! AWS documents them (the API reference, "Guidelines for using the BatchImportFindings
//! API"), for the faults moto does not make.
//!
//! `POST /findings/import` (REST-JSON, SigV4 for `securityhub`) takes `{"Findings": [...]}`:
//! at most 100 findings and 6 MB a call (more is `InvalidInputException`, 400). Each
//! finding is checked as the service checks it, and one that fails is listed in
//! `FailedFindings` (`InvalidInput`) while the others are imported: the required ASFF
//! fields, the default product of the caller's account with `AwsAccountId` that account,
//! at most 240 KB, a title of at most 256 and a description of at most 1024 characters.
//! A finding is kept by its `Id`: importing it again updates it (counted). `POST /` with
//! `Action=GetCallerIdentity` (SigV4 for `sts`) names the account. A bad signature is 403
//! (`InvalidSignatureException`), as AWS answers.
//!
//! Scripted faults: a share of calls answered `LimitExceededException` (429, the
//! throttling), `InternalException` (500) or with the connection dropped, all before
//! anything is imported; findings holding a poison string refused in `FailedFindings`, and
//! calls holding another refused as a whole (`InvalidInputException`);
//! `hang_requests` imports never answered; every import refused
//! (`AccessDeniedException`, 403) or answered as from an account without a hub
//! (`InvalidAccessException`, 401).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use serde_json::{json, Value};

use crate::server::{roll_fault, Answer, DropConnection, Fault, Server};
use crate::sigv4::{verify, SigV4Key};

/// The temporary credentials the peer accepts (hand them to the process under test).
pub const ACCESS_KEY_ID: &str = "AKIAFLOWLOGHUBTEST01";
pub const SECRET_ACCESS_KEY: &str = "hub+Secret/Key0123456789abcdefghijklmnopq";
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEFLOWLOGHUBTESTsessionTOKEN0123456789";

/// How the hub behaves.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub account_id: String,
    pub region: String,
    /// Share of imports (0..1) that fail before importing: 429, 500 or a dropped
    /// connection.
    pub failure_rate: f64,
    /// A finding whose JSON contains this is refused in `FailedFindings`.
    pub poison: Option<String>,
    /// A call holding this is refused as a whole (`InvalidInputException`), as the service
    /// refuses a call with a finding it cannot read.
    pub refuse_call_with: Option<String>,
    /// This many imports, from the `hang_from`th (0 = the first), are never answered (the
    /// connection stays open).
    pub hang_requests: u64,
    pub hang_from: u64,
    /// Every import refused: the caller lacks `securityhub:BatchImportFindings`.
    pub deny: bool,
    /// Every import answered as from an account that has not enabled Security Hub.
    pub not_enabled: bool,
    pub seed: u64,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            failure_rate: 0.0,
            poison: None,
            refuse_call_with: None,
            hang_requests: 0,
            hang_from: 0,
            deny: false,
            not_enabled: false,
            seed: 1,
        }
    }
}

/// A finding the hub holds, and how many times it was imported.
#[derive(Debug, Clone)]
pub struct Held {
    pub finding: Value,
    pub imports: u32,
}

/// What the hub saw.
#[derive(Debug, Default, Clone)]
pub struct HubStats {
    /// Import calls, answered or not.
    pub imports: u64,
    pub identity_calls: u64,
    pub imported_findings: u64,
    pub refused_findings: u64,
    /// Calls refused as a whole for their input.
    pub refused_calls: u64,
    pub throttled: u64,
    pub internal_errors: u64,
    pub dropped_connections: u64,
    pub hung: u64,
    pub bad_signatures: u64,
    pub largest_call: usize,
}

#[derive(Default)]
struct State {
    stats: HubStats,
    findings: HashMap<String, Held>,
    rng: Option<fastrand::Rng>,
}

/// A running hub; stopped when dropped.
pub struct HubPeer {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl HubPeer {
    pub fn start(options: HubOptions) -> Self {
        let state = Arc::new(Mutex::new(State {
            rng: Some(fastrand::Rng::with_seed(options.seed)),
            ..State::default()
        }));
        let options = Arc::new(options);
        let s = Arc::clone(&state);
        let server = Server::start("security-hub-peer", false, move |request| {
            let (state, options) = (Arc::clone(&s), Arc::clone(&options));
            async move { handle(request, &state, &options).await }
        });
        Self { server, state }
    }

    /// The endpoint (`endpoint_url`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn stats(&self) -> HubStats {
        self.state.lock().unwrap().stats.clone()
    }

    /// The findings held, by `Id`.
    pub fn findings(&self) -> HashMap<String, Held> {
        self.state.lock().unwrap().findings.clone()
    }
}

/// A REST-JSON error, as the SDK reads it (the type in `x-amzn-ErrorType` and the body).
fn error(status: u16, code: &str, message: &str) -> Answer {
    let mut answer = crate::server::json(status, &json!({"__type": code, "Message": message}));
    answer.headers_mut().insert(
        "x-amzn-errortype",
        http::HeaderValue::from_str(code).expect("a header value"),
    );
    answer
}

fn key(options: &HubOptions, service: &str) -> SigV4Key {
    SigV4Key {
        access_key_id: ACCESS_KEY_ID.into(),
        secret_access_key: SECRET_ACCESS_KEY.into(),
        session_token: Some(SESSION_TOKEN.into()),
        region: options.region.clone(),
        service: service.into(),
    }
}

async fn handle(
    request: http::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    options: &HubOptions,
) -> Result<Answer, DropConnection> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    if parts.method == http::Method::POST && parts.uri.path() == "/" {
        return Ok(identity(&parts, &body, state, options));
    }
    if parts.method != http::Method::POST || parts.uri.path() != "/findings/import" {
        return Ok(error(404, "ResourceNotFoundException", "no such operation"));
    }
    let hang = {
        let mut state = state.lock().unwrap();
        state.stats.imports += 1;
        let hang =
            state.stats.imports > options.hang_from && state.stats.hung < options.hang_requests;
        state.stats.hung += u64::from(hang);
        hang
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let mut state = state.lock().unwrap();
    if let Err(message) = verify(&parts, &body, &key(options, "securityhub")) {
        state.stats.bad_signatures += 1;
        return Ok(error(403, "InvalidSignatureException", &message));
    }
    if options.deny {
        return Ok(error(
            403,
            "AccessDeniedException",
            &format!(
                "User: arn:aws:iam::{}:user/flowlog is not authorized to perform: \
                 securityhub:BatchImportFindings",
                options.account_id
            ),
        ));
    }
    if options.not_enabled {
        return Ok(error(
            401,
            "InvalidAccessException",
            &format!(
                "Account {} is not subscribed to AWS Security Hub",
                options.account_id
            ),
        ));
    }
    match roll_fault(&mut state.rng, options.failure_rate) {
        Some(Fault::Throttled) => {
            state.stats.throttled += 1;
            return Ok(error(429, "LimitExceededException", "Rate exceeded"));
        }
        Some(Fault::Busy) => {
            state.stats.internal_errors += 1;
            return Ok(error(500, "InternalException", "Internal service error"));
        }
        Some(Fault::Dropped) => {
            state.stats.dropped_connections += 1;
            return Err(DropConnection);
        }
        None => {}
    }
    let refused = options.refuse_call_with.as_ref();
    if refused.is_some_and(|r| memchr::memmem::find(&body, r.as_bytes()).is_some()) {
        state.stats.refused_calls += 1;
        return Ok(error(
            400,
            "InvalidInputException",
            "Finding could not be read",
        ));
    }
    if body.len() > 6 << 20 {
        return Ok(error(
            400,
            "InvalidInputException",
            "request larger than 6 MB",
        ));
    }
    let Some(findings) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("Findings").and_then(Value::as_array).cloned())
    else {
        return Ok(error(400, "InvalidInputException", "Findings is required"));
    };
    if findings.len() > 100 {
        return Ok(error(
            400,
            "InvalidInputException",
            "Findings: at most 100 findings a call",
        ));
    }
    state.stats.largest_call = state.stats.largest_call.max(findings.len());
    let mut failed = Vec::new();
    let mut imported = 0;
    for finding in findings {
        let id = finding["Id"].as_str().unwrap_or_default().to_string();
        if let Some(message) = refusal(&finding, options) {
            state.stats.refused_findings += 1;
            failed.push(json!({"Id": id, "ErrorCode": "InvalidInput", "ErrorMessage": message}));
            continue;
        }
        imported += 1;
        state.stats.imported_findings += 1;
        let held = state.findings.entry(id).or_insert(Held {
            finding: Value::Null,
            imports: 0,
        });
        held.finding = finding;
        held.imports += 1;
    }
    Ok(crate::server::json(
        200,
        &json!({
            "FailedCount": failed.len(),
            "SuccessCount": imported,
            "FailedFindings": failed,
        }),
    ))
}

/// Why the service would refuse `finding`, if it would.
fn refusal(finding: &Value, options: &HubOptions) -> Option<String> {
    let text = finding.to_string();
    if options
        .poison
        .as_ref()
        .is_some_and(|p| text.contains(p.as_str()))
    {
        return Some("Finding refused by the test's script".into());
    }
    if text.len() > 240 * 1024 {
        return Some("Finding larger than 240 KB".into());
    }
    for field in [
        "SchemaVersion",
        "Id",
        "ProductArn",
        "GeneratorId",
        "AwsAccountId",
        "CreatedAt",
        "UpdatedAt",
        "Severity",
        "Title",
        "Description",
        "Resources",
    ] {
        if finding.get(field).is_none_or(Value::is_null) {
            return Some(format!("{field} is required"));
        }
    }
    let has_types = finding["Types"].as_array().is_some_and(|t| !t.is_empty())
        || finding["FindingProviderFields"]["Types"]
            .as_array()
            .is_some_and(|t| !t.is_empty());
    if !has_types {
        return Some("Types is required".into());
    }
    if finding["Resources"].as_array().is_none_or(Vec::is_empty) {
        return Some("Resources must hold at least one resource".into());
    }
    let account = &options.account_id;
    let product = format!(
        "arn:aws:securityhub:{}:{account}:product/{account}/default",
        options.region
    );
    if finding["ProductArn"] != product.as_str() || finding["AwsAccountId"] != account.as_str() {
        return Some(format!(
            "The caller {account} may import findings of {product} for itself only"
        ));
    }
    if finding["Title"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .count()
        > 256
    {
        return Some("Title longer than 256 characters".into());
    }
    if finding["Description"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .count()
        > 1024
    {
        return Some("Description longer than 1024 characters".into());
    }
    None
}

/// STS `GetCallerIdentity` (query protocol, XML answer).
fn identity(
    parts: &http::request::Parts,
    body: &[u8],
    state: &Mutex<State>,
    options: &HubOptions,
) -> Answer {
    let mut state = state.lock().unwrap();
    state.stats.identity_calls += 1;
    let xml = |status: u16, text: String| {
        http::Response::builder()
            .status(status)
            .header("content-type", "text/xml")
            .body(http_body_util::Full::new(bytes::Bytes::from(text)))
            .expect("a valid answer")
    };
    if let Err(message) = verify(parts, body, &key(options, "sts")) {
        state.stats.bad_signatures += 1;
        return xml(
            403,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>\
                 <Message>{message}</Message></Error><RequestId>0</RequestId></ErrorResponse>"
            ),
        );
    }
    if !String::from_utf8_lossy(body).contains("Action=GetCallerIdentity") {
        return xml(
            400,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidAction</Code>\
             <Message>not an STS action this peer answers</Message></Error>\
             <RequestId>0</RequestId></ErrorResponse>"
                .into(),
        );
    }
    let account = &options.account_id;
    xml(
        200,
        format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><Arn>arn:aws:iam::{account}:user/flowlog</Arn>\
             <UserId>AIDAFLOWLOGHUBTEST</UserId><Account>{account}</Account>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>\
             c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>"
        ),
    )
}
