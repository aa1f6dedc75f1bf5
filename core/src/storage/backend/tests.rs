//! Backend settings from configuration and environment: credentials, precedence, messages.

use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn config(backend: StorageBackend) -> StorageConfig {
    StorageConfig {
        backend,
        ..StorageConfig::default()
    }
}

fn error_of(config: &StorageConfig, env: &[(&str, &str)]) -> String {
    match Backend::from_config(config, &env_of(env)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected a configuration error"),
    }
}

#[test]
fn remote_backends_without_credentials_say_what_to_set() {
    let s3 = error_of(&config(StorageBackend::S3), &[]);
    assert!(
        s3.contains("AWS_ACCESS_KEY_ID") && s3.contains("storage.s3"),
        "{s3}"
    );
    let gcs = error_of(&config(StorageBackend::Gcs), &[]);
    assert!(gcs.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{gcs}");
    let azure = error_of(&config(StorageBackend::Azure), &[]);
    assert!(azure.contains("AZURE_STORAGE_ACCOUNT_NAME"), "{azure}");
    let azure = error_of(
        &config(StorageBackend::Azure),
        &[("AZURE_STORAGE_ACCOUNT_NAME", "acct")],
    );
    assert!(azure.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{azure}");
}

#[test]
fn virtual_hosted_buckets_get_their_own_host() {
    let s3 = S3Settings {
        endpoint: "http://s3.example:9000".into(),
        region: "us-east-1".into(),
        virtual_hosted_style: true,
        credentials: S3Credentials::Environment,
    };
    assert_eq!(
        s3.bucket_endpoint("gitpod-user-a").ok().as_deref(),
        Some("http://gitpod-user-a.s3.example:9000")
    );
    let path_style = S3Settings {
        virtual_hosted_style: false,
        ..s3
    };
    assert_eq!(
        path_style.bucket_endpoint("b").ok().as_deref(),
        Some("http://s3.example:9000")
    );
}

#[test]
fn configured_credentials_win_over_the_environment_for_every_backend() {
    let mut gcs = config(StorageBackend::Gcs);
    gcs.gcs.service_account_key = Secret::new("{}");
    let env = env_of(&[
        ("GOOGLE_SERVICE_ACCOUNT_PATH", "/env/key.json"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
        ("AZURE_STORAGE_ACCOUNT_KEY", "ZW52"),
    ]);
    let Ok(Some(Backend::Gcs(g))) = Backend::from_config(&gcs, &env) else {
        panic!("expected gcs");
    };
    assert!(matches!(
        g.credentials,
        GcsCredentials::ServiceAccountKey(_)
    ));
    let mut azure = config(StorageBackend::Azure);
    azure.azure.sas_token = Secret::new("sv=1&sig=x");
    let Ok(Some(Backend::Azure(a))) = Backend::from_config(&azure, &env) else {
        panic!("expected azure");
    };
    assert!(matches!(a.credentials, AzureCredentials::SasToken(_)));
}

#[test]
fn half_configured_s3_credentials_are_refused() {
    let e = error_of(
        &config(StorageBackend::S3),
        &[("AWS_ACCESS_KEY_ID", "AKID")],
    );
    assert!(e.contains("no secret access key"), "{e}");
    assert!(!e.contains("AKID"), "{e}");
}

#[test]
fn configuration_wins_over_the_environment() {
    let mut c = config(StorageBackend::S3);
    c.s3.access_key_id = "from-config".into();
    c.s3.secret_access_key = Secret::new("config-secret");
    let env = env_of(&[
        ("AWS_ACCESS_KEY_ID", "from-env"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_REGION", "eu-west-1"),
    ]);
    let Ok(Some(Backend::S3(s3))) = Backend::from_config(&c, &env) else {
        panic!("expected s3");
    };
    assert_eq!(s3.region, "eu-west-1");
    match s3.credentials {
        S3Credentials::Static { key_id, secret, .. } => {
            assert_eq!(key_id, "from-config");
            assert_eq!(secret.expose(), "config-secret");
        }
        S3Credentials::Environment => panic!("expected static credentials"),
    }
}

#[test]
fn remote_buckets_open_without_network() {
    let env = env_of(&[
        ("AWS_ACCESS_KEY_ID", "k"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
        ("AZURE_STORAGE_ACCOUNT_KEY", "a2V5"),
    ]);
    for backend in [StorageBackend::S3, StorageBackend::Azure] {
        let c = config(backend);
        let b = Backend::from_config(&c, &env).ok().flatten();
        let stores = b.map(|b| b.open_bucket("bucket-1", &c));
        assert!(matches!(stores, Some(Ok(_))), "{backend:?}");
    }
}

#[test]
fn an_unreadable_gcs_key_is_a_clear_configuration_error() {
    let mut c = config(StorageBackend::Gcs);
    c.gcs.service_account_key = Secret::new("{not json");
    let backend = Backend::from_config(&c, &env_of(&[])).ok().flatten();
    let Some(Err(e)) = backend.map(|b| b.open_bucket("bucket-1", &c)) else {
        panic!("expected an error");
    };
    let msg = e.to_string();
    assert!(msg.contains("cannot open bucket bucket-1"), "{msg}");
    assert!(!msg.contains("not json"), "{msg}");
}
