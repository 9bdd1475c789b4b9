//! The AWS plumbing every part of flowlog that calls AWS shares: a client configuration
//! from the standard chain and the settings ([`sdk_config`]), and an AWS failure said in
//! one line a person can act on, naming the IAM permission when the answer was a refusal
//! ([`explain`]). Service clients stay in the crates that call those services.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use flowlog_model::error_chain;

/// Where the AWS settings of a source come from: the settings override the standard
/// chain (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, the shared files, the
/// instance's role).
#[derive(Debug, Clone, Default)]
pub struct Connection<'a> {
    pub region: Option<&'a str>,
    pub profile: Option<&'a str>,
    pub endpoint_url: Option<&'a str>,
}

/// The SDK configuration: the default chain with what `connection` sets.
pub async fn sdk_config(connection: &Connection<'_>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = connection.region {
        loader = loader.region(Region::new(region.to_string()));
    }
    if let Some(profile) = connection.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = connection.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

/// What an AWS call's failure says, for a person: one line (an HTML page from a wrong
/// endpoint is named, not dumped), and the IAM permission `needs` only when the answer
/// was a refusal (a DNS failure or missing credentials is not a permission problem).
/// `service` names the API in a message about an answer in a form the SDK cannot read.
///
/// A refusal is known by its code, or by its status alone: an answer whose body the SDK
/// cannot read (an S3-compatible store, an emulator answering SQS's JSON protocol in
/// XML) still comes with 403.
pub fn explain<E>(e: &SdkError<E, HttpResponse>, service: &str, needs: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let chain = error_chain(e);
    let text = match e.raw_response() {
        // The SDK's complaint about a body it could not parse ("unexpected token '<'")
        // tells a person nothing; the status does. (An HTML page is named by one_line.)
        Some(answer)
            if e.code().is_none()
                && matches!(e, SdkError::ServiceError(_))
                && html_at(&chain).is_none() =>
        {
            let body = answer
                .body()
                .bytes()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            // An XML error (what S3-style services and emulators answer) names its message.
            let said = match (body.find("<Message>"), body.find("</Message>")) {
                (Some(from), Some(to)) if from + 9 <= to => &body[from + 9..to],
                _ => body.trim(),
            };
            let said = one_line(said);
            format!(
                "HTTP {}, in a form the AWS SDK does not read as {service}'s (a proxy or an \
                 emulator between?){}",
                answer.status().as_u16(),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            )
        }
        _ => one_line(&chain),
    };
    // SQS says `KMS.AccessDeniedException`, Kinesis `KMSAccessDeniedException`; KMS's
    // other answers (a disabled or missing key, throttling) are said as they are.
    let by_kms = e
        .code()
        .is_some_and(|code| code.starts_with("KMS") && code.contains("AccessDenied"));
    match e {
        // A queue or object encrypted with a key the caller may not use.
        _ if by_kms => format!("{text} (refused by KMS: flowlog needs kms:Decrypt on the key)"),
        _ if refused(e) => format!("{text} (refused: flowlog needs {needs})"),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "{text} (the endpoint could not be reached: check endpoint_url, the region, the \
             network or a proxy)"
        ),
        _ => text,
    }
}

/// Whether the answer was a refusal of the caller's permissions (not of its credentials,
/// which are a different fix).
pub fn refused<E>(e: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match e.code() {
        Some(code) => {
            code.contains("AccessDenied") || code == "AuthorizationError" || code == "Forbidden"
        }
        None => e.raw_response().is_some_and(|r| r.status().as_u16() == 403),
    }
}

/// Where an HTML page starts in `text`, if it holds one.
fn html_at(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("<html"), lower.find("<!doctype")]
        .into_iter()
        .flatten()
        .min()
}

/// An error's text cut to one line of at most 300 characters; an HTML page (a wrong
/// endpoint, a captive portal) is said to be one.
pub fn one_line(text: &str) -> String {
    if let Some(at) = html_at(text) {
        let before = text[..at].trim_end().trim_end_matches(':');
        return format!("{before}: an HTML page answered, not an AWS API (is endpoint_url right?)");
    }
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(status: u16, code: &str) -> SdkError<ErrorMetadata, HttpResponse> {
        SdkError::service_error(
            ErrorMetadata::builder().code(code).message("no").build(),
            Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn a_refusal_names_the_permission_and_a_kms_refusal_names_kms() {
        let said = explain(
            &answered(400, "AccessDeniedException"),
            "Kinesis",
            "kinesis:GetRecords",
        );
        assert!(
            said.ends_with("(refused: flowlog needs kinesis:GetRecords)"),
            "{said}"
        );
        for code in ["KMSAccessDeniedException", "KMS.AccessDeniedException"] {
            let said = explain(&answered(400, code), "Kinesis", "kinesis:GetRecords");
            assert!(said.contains("flowlog needs kms:Decrypt"), "{code}: {said}");
            assert!(!said.contains("kinesis:GetRecords"), "{code}: {said}");
        }
        for code in ["InternalFailure", "KMSDisabledException"] {
            let said = explain(&answered(500, code), "Kinesis", "kinesis:GetRecords");
            assert!(!said.contains("flowlog needs"), "{code}: {said}");
        }
    }

    #[test]
    fn an_html_page_or_a_long_error_is_one_line() {
        let page = "service error: unhandled error (Unknown): <!DOCTYPE html>\n<html><body>\
                    404 Not Found</body></html>";
        assert_eq!(
            one_line(page),
            "service error: unhandled error (Unknown): an HTML page answered, not an AWS API \
             (is endpoint_url right?)"
        );
        let long = format!("{}\nsecond line", "x".repeat(400));
        assert_eq!(one_line(&long), format!("{}...", "x".repeat(300)));
    }
}
