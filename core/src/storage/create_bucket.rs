//! Creating a missing bucket before the first upload into it. object_store has no API for this, so
//! these are the backends' own requests: S3 CreateBucket presigned by object_store's signer, Azure
//! Create Container signed with the account's shared key (or carrying its SAS token), and GCS
//! buckets.insert with the store's OAuth token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use hmac::{Hmac, Mac};
use object_store::aws::AmazonS3;
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use sha2::Sha256;

use crate::config::Secret;

/// The REST API version of the Azure requests made here.
const AZURE_VERSION: &str = "2021-08-06";

pub(super) enum BucketCreator {
    S3 {
        store: Arc<AmazonS3>,
        region: String,
    },
    Azure {
        /// `https://<account>.blob.core.windows.net/<container>` or the configured endpoint's.
        container_url: String,
        account: String,
        auth: AzureAuth,
    },
    Gcs {
        store: Arc<GoogleCloudStorage>,
        base_url: String,
        project: String,
        bucket: String,
    },
}

/// What a creation attempt found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Creation {
    Created,
    /// The bucket exists already (ours, or somebody else's: then the upload reports the refusal).
    Existed,
    /// The store refused (no permission to create buckets, say): the upload will tell whether the
    /// bucket is usable; asking again on every upload would not change the answer.
    Refused(String),
}

pub(super) enum AzureAuth {
    SharedKey(Secret),
    SasToken(Secret),
}

impl BucketCreator {
    /// Creates the bucket unless it exists. `Err` for transient failures, worth another attempt.
    pub async fn create(&self, http: &reqwest::Client) -> Result<Creation, String> {
        match self {
            BucketCreator::S3 { store, region } => create_s3_bucket(http, store, region).await,
            BucketCreator::Azure {
                container_url,
                account,
                auth,
            } => create_azure_container(http, container_url, account, auth).await,
            BucketCreator::Gcs {
                store,
                base_url,
                project,
                bucket,
            } => create_gcs_bucket(http, store, base_url, project, bucket).await,
        }
    }
}

async fn create_s3_bucket(
    http: &reqwest::Client,
    store: &AmazonS3,
    region: &str,
) -> Result<Creation, String> {
    let root = ObjectPath::from("");
    let bucket_url = |method| store.signed_url(method, &root, Duration::from_secs(300));
    // HeadBucket first: CreateBucket on a bucket we own is not always harmless (in us-east-1 it
    // answers 200 and resets the bucket's ACLs).
    let head = http
        .head(
            bucket_url(http::Method::HEAD)
                .await
                .map_err(|e| e.to_string())?,
        )
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    match head.status() {
        s if s.is_success() => return Ok(Creation::Existed),
        reqwest::StatusCode::NOT_FOUND => {}
        reqwest::StatusCode::FORBIDDEN => {
            return Ok(Creation::Refused("403 Forbidden on HeadBucket".into()))
        }
        s if s.is_server_error() => return Err(s.to_string()),
        _ => {}
    }
    let body = if region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
    };
    let response = http
        .put(
            bucket_url(http::Method::PUT)
                .await
                .map_err(|e| e.to_string())?,
        )
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        return Ok(Creation::Created);
    }
    let text = response.text().await.unwrap_or_default();
    let code = super::s3_error_code(&text);
    match code {
        // Some stores (s3s, MinIO) answer BucketAlreadyExists for a bucket the caller owns.
        Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists") => Ok(Creation::Existed),
        // A concurrent creation (another daemon) is still in progress: try again later.
        Some("OperationAborted") => Err(format!("{status} OperationAborted")),
        _ if status.is_server_error() => Err(status.to_string()),
        Some(code) => Ok(Creation::Refused(format!("{status} {code}"))),
        None => Ok(Creation::Refused(status.to_string())),
    }
}

async fn create_azure_container(
    http: &reqwest::Client,
    container_url: &str,
    account: &str,
    auth: &AzureAuth,
) -> Result<Creation, String> {
    let mut url = reqwest::Url::parse(container_url).map_err(|e| e.to_string())?;
    match auth {
        AzureAuth::SharedKey(_) => url.set_query(Some("restype=container")),
        AzureAuth::SasToken(token) => {
            let token = token.expose().trim_start_matches('?');
            url.set_query(Some(&format!("restype=container&{token}")));
        }
    }
    let date = httpdate::fmt_http_date(SystemTime::now());
    let mut request = http
        .put(url.clone())
        .header("x-ms-date", &date)
        .header("x-ms-version", AZURE_VERSION)
        .header("content-length", "0");
    if let AzureAuth::SharedKey(key) = auth {
        let signature = shared_key_signature(key, account, url.path(), &date)?;
        request = request.header("authorization", format!("SharedKey {account}:{signature}"));
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        return Ok(Creation::Created);
    }
    let code = response
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match code.as_str() {
        "ContainerAlreadyExists" => Ok(Creation::Existed),
        // Deleted moments ago; Azure refuses re-creation for a while.
        "ContainerBeingDeleted" => Err(format!("{status} {code}")),
        _ if status.is_server_error() => Err(status.to_string()),
        "" => Ok(Creation::Refused(status.to_string())),
        code => Ok(Creation::Refused(format!("{status} {code}"))),
    }
}

async fn create_gcs_bucket(
    http: &reqwest::Client,
    store: &GoogleCloudStorage,
    base_url: &str,
    project: &str,
    bucket: &str,
) -> Result<Creation, String> {
    let credential = store
        .credentials()
        .get_credential()
        .await
        .map_err(|e| e.to_string())?;
    let mut url =
        reqwest::Url::parse(&format!("{base_url}/storage/v1/b")).map_err(|e| e.to_string())?;
    url.query_pairs_mut().append_pair("project", project);
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "name": bucket }).to_string());
    // Emulators run without OAuth and hand out an empty token.
    if !credential.bearer.is_empty() {
        request = request.bearer_auth(&credential.bearer);
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    match response.status() {
        s if s.is_success() => Ok(Creation::Created),
        // Already ours, or taken by somebody else: the upload reports the latter.
        reqwest::StatusCode::CONFLICT => Ok(Creation::Existed),
        s if s.is_server_error() => Err(s.to_string()),
        s => Ok(Creation::Refused(s.to_string())),
    }
}

/// The Shared Key signature of a Create Container request (no body, no conditional headers).
fn shared_key_signature(
    key: &Secret,
    account: &str,
    path: &str,
    date: &str,
) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.expose())
        .map_err(|_| "the Azure access key is not valid base64".to_string())?;
    // VERB, then Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
    // If-Match, If-None-Match, If-Unmodified-Since, Range (all empty), the x-ms-* headers in
    // order, and the canonical resource.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{AZURE_VERSION}\n\
         /{account}{path}\nrestype:container"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| "the Azure access key is not usable".to_string())?;
    mac.update(string_to_sign.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_key_signature_matches_a_known_value() {
        // Computed independently with Python's hmac/hashlib over the same string to sign.
        let key = Secret::new(
            "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
        );
        let sig = shared_key_signature(
            &key,
            "devstoreaccount1",
            "/devstoreaccount1/c1",
            "Mon, 30 Nov 2026 05:00:00 GMT",
        );
        assert_eq!(sig.as_deref(), Ok(EXPECTED));
    }

    const EXPECTED: &str = "c38mq4rL1JpqXrl4CyiVuo1GHPGhE1QzNtyyEmPmtQY=";

    #[test]
    fn a_key_that_is_not_base64_is_an_error_without_the_key() {
        let e = shared_key_signature(&Secret::new("not base64!"), "a", "/c", "d");
        assert_eq!(
            e,
            Err("the Azure access key is not valid base64".to_string())
        );
    }
}
