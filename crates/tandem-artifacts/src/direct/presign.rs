//! Query-presigned part URLs: AWS SigV4 (`AWS4-HMAC-SHA256`) for S3 and
//! Google's V4 (`GOOG4-RSA-SHA256`) for GCS's XML API.
//!
//! object_store presigns only a bare object URL (`Signer::signed_url`), and
//! both schemes sign the whole query, so a part's `partNumber` and
//! `uploadId` cannot be added afterwards: they are signed here. The two
//! schemes share their canonical request (method, path, sorted strictly
//! encoded query, `host` as the only signed header, unsigned payload) and
//! differ in the string to sign and the key: an HMAC chain over the secret
//! key for S3, an RSA-SHA256 signature with the service account's private
//! key for GCS. Both are checked against their publishers' examples in the
//! tests.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use object_store::aws::AwsCredential;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use sha2::{Digest, Sha256};
use url::Url;

/// RFC 3986's unreserved characters stay, everything else is `%XX` (AWS's
/// `UriEncode`, Google's canonical query and path segments).
pub(crate) fn strict_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` of a time (UTC), as both schemes write it.
pub(crate) fn compact_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

/// The sorted, strictly encoded query of `params` (`k=v&…`).
fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (strict_encode(k), strict_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request of a presigned URL whose only signed header is
/// `host`, with an unsigned payload. `base`'s path is taken as already
/// encoded (the canonical URI).
fn canonical_request(method: &str, base: &Url, query: &str) -> String {
    let host = &base[url::Position::BeforeHost..url::Position::AfterPort];
    format!(
        "{method}\n{}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD",
        base.path()
    )
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A SigV4 query-presigned URL for `method` on `base` (an object URL without
/// query) with `extra` query parameters inside the signature.
pub(crate) fn presign_s3(
    method: &str,
    base: &Url,
    extra: &[(&str, &str)],
    credential: &AwsCredential,
    region: &str,
    now: SystemTime,
    expires_in: Duration,
) -> String {
    let date_time = compact_date(now);
    let date = &date_time[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let mut params: Vec<(String, String)> = vec![
        ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
        (
            "X-Amz-Credential".into(),
            format!("{}/{scope}", credential.key_id),
        ),
        ("X-Amz-Date".into(), date_time.clone()),
        ("X-Amz-Expires".into(), expires_in.as_secs().to_string()),
        ("X-Amz-SignedHeaders".into(), "host".into()),
    ];
    if let Some(token) = &credential.token {
        params.push(("X-Amz-Security-Token".into(), token.clone()));
    }
    params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let query = canonical_query(&params);
    // object_store's URL path is already percent-encoded once, which is
    // S3's canonical URI.
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request(method, base, &query).as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", credential.secret_key).as_bytes(), date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, "s3");
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex::encode(hmac(&k_signing, &string_to_sign));
    let mut url = base.clone();
    url.set_query(Some(&format!("{query}&X-Amz-Signature={signature}")));
    url.to_string()
}

/// A GCS service account's identity and private key: what signs V4 URLs
/// without a call to Google's IAM `signBlob`.
pub(crate) struct GcsSigner {
    email: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for GcsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsSigner")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl GcsSigner {
    /// From a PEM private key (PKCS#8, as service account files hold it,
    /// or PKCS#1).
    pub(crate) fn from_pem(email: &str, pem: &str) -> Result<GcsSigner, String> {
        use rustls_pemfile::Item;
        let item = rustls_pemfile::read_one(&mut pem.as_bytes())
            .map_err(|e| format!("the private key is not PEM: {e}"))?;
        let key = match item {
            Some(Item::Pkcs8Key(key)) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
            Some(Item::Pkcs1Key(key)) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
            _ => return Err("the private key is not an RSA key in PEM".to_string()),
        }
        .map_err(|e| format!("the private key is not a usable RSA key: {e}"))?;
        Ok(GcsSigner {
            email: email.to_string(),
            key,
        })
    }

    /// A V4 query-presigned URL for `method` on `base` (an object URL
    /// without query, its path encoded segment by segment) with `extra`
    /// query parameters inside the signature.
    pub(crate) fn presign(
        &self,
        method: &str,
        base: &Url,
        extra: &[(&str, &str)],
        now: SystemTime,
        expires_in: Duration,
    ) -> Result<String, String> {
        let date_time = compact_date(now);
        let scope = format!("{}/auto/storage/goog4_request", &date_time[..8]);
        let mut params: Vec<(String, String)> = vec![
            ("X-Goog-Algorithm".into(), "GOOG4-RSA-SHA256".into()),
            ("X-Goog-Credential".into(), format!("{}/{scope}", self.email)),
            ("X-Goog-Date".into(), date_time.clone()),
            ("X-Goog-Expires".into(), expires_in.as_secs().to_string()),
            ("X-Goog-SignedHeaders".into(), "host".into()),
        ];
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let query = canonical_query(&params);
        let string_to_sign = format!(
            "GOOG4-RSA-SHA256\n{date_time}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request(method, base, &query).as_bytes()))
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                string_to_sign.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "RSA signing failed".to_string())?;
        let mut url = base.clone();
        url.set_query(Some(&format!(
            "{query}&X-Goog-Signature={}",
            hex::encode(signature)
        )));
        Ok(url.to_string())
    }
}

/// The URL of `object` in `bucket` at a GCS XML API endpoint, each path
/// segment strictly encoded and the slashes kept (Google's canonical form).
pub(crate) fn gcs_object_url(endpoint: &str, bucket: &str, object: &str) -> Result<Url, String> {
    let encoded: Vec<String> = object.split('/').map(strict_encode).collect();
    let raw = format!(
        "{}/{}/{}",
        endpoint.trim_end_matches('/'),
        strict_encode(bucket),
        encoded.join("/")
    );
    Url::parse(&raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// AWS's published example of a presigned GET
    /// (docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html).
    #[test]
    fn presigns_s3_as_aws_documents() {
        let credential = AwsCredential {
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        };
        let base = Url::parse("https://examplebucket.s3.amazonaws.com/test.txt").unwrap();
        // 2013-05-24T00:00:00Z
        let now = UNIX_EPOCH + Duration::from_secs(1_369_353_600);
        let url = presign_s3(
            "GET",
            &base,
            &[],
            &credential,
            "us-east-1",
            now,
            Duration::from_secs(86_400),
        );
        assert!(
            url.ends_with("X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Date=20130524T000000Z"), "{url}");
    }

    #[test]
    fn extra_s3_parameters_are_signed_in_sorted_order() {
        let credential = AwsCredential {
            key_id: "k".into(),
            secret_key: "s".into(),
            token: Some("t/+=".into()),
        };
        let base = Url::parse("http://127.0.0.1:9000/bucket/a%20b/c").unwrap();
        let url = presign_s3(
            "PUT",
            &base,
            &[("partNumber", "3"), ("uploadId", "x+y/z")],
            &credential,
            "eu-west-1",
            UNIX_EPOCH,
            Duration::from_secs(60),
        );
        let parsed = Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/bucket/a%20b/c");
        let query = parsed.query().unwrap();
        assert!(query.contains("partNumber=3&uploadId=x%2By%2Fz"), "{query}");
        assert!(query.contains("X-Amz-Security-Token=t%2F%2B%3D"), "{query}");
        assert!(query.contains("X-Amz-Date=19700101T000000Z"), "{query}");
    }

    /// The inactive service account Google publishes with its V4 signing
    /// conformance tests (github.com/googleapis/conformance-tests,
    /// storage/v1/service-account).
    const GOOGLE_TEST_ACCOUNT: &str = "test-iam-credentials@dummy-project-id.iam.gserviceaccount.com";
    const GOOGLE_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCsPzMirIottfQ2
ryjQmPWocSEeGo7f7Q4/tMQXHlXFzo93AGgU2t+clEj9L5loNhLVq+vk+qmnyDz5
Q04y8jVWyMYzzGNNrGRW/yaYqnqlKZCy1O3bmnNjV7EDbC/jE1ZLBY0U3HaSHfn6
S9ND8MXdgD0/ulRTWwq6vU8/w6i5tYsU7n2LLlQTl1fQ7/emO9nYcCFJezHZVa0H
meWsdHwWsok0skwQYQNIzP3JF9BpR5gJT2gNge6KopDesJeLoLzaX7cUnDn+CAnn
LuLDwwSsIVKyVxhBFsFXPplgpaQRwmGzwEbf/Xpt9qo26w2UMgn30jsOaKlSeAX8
cS6ViF+tAgMBAAECggEACKRuJCP8leEOhQziUx8Nmls8wmYqO4WJJLyk5xUMUC22
SI4CauN1e0V8aQmxnIc0CDkFT7qc9xBmsMoF+yvobbeKrFApvlyzNyM7tEa/exh8
DGD/IzjbZ8VfWhDcUTwn5QE9DCoon9m1sG+MBNlokB3OVOt8LieAAREdEBG43kJu
yQTOkY9BGR2AY1FnAl2VZ/jhNDyrme3tp1sW1BJrawzR7Ujo8DzlVcS2geKA9at7
55ua5GbHz3hfzFgjVXDfnkWzId6aHypUyqHrSn1SqGEbyXTaleKTc6Pgv0PgkJjG
hZazWWdSuf1T5Xbs0OhAK9qraoAzT6cXXvMEvvPt6QKBgQDXcZKqJAOnGEU4b9+v
Odoh+nssdrIOBNMu1m8mYbUVYS1aakc1iDGIIWNM3qAwbG+yNEIi2xi80a2RMw2T
9RyCNB7yqCXXVKLBiwg9FbKMai6Vpk2bWIrzahM9on7AhCax/X2AeOp+UyYhFEy6
UFG4aHb8THscL7b515ukSuKb5QKBgQDMq+9PuaB0eHsrmL6q4vHNi3MLgijGg/zu
AXaPygSYAwYW8KglcuLZPvWrL6OG0+CrfmaWTLsyIZO4Uhdj7MLvX6yK7IMnagvk
L3xjgxSklEHJAwi5wFeJ8ai/1MIuCn8p2re3CbwISKpvf7Sgs/W4196P4vKvTiAz
jcTiSYFIKQKBgCjMpkS4O0TakMlGTmsFnqyOneLmu4NyIHgfPb9cA4n/9DHKLKAT
oaWxBPgatOVWs7RgtyGYsk+XubHkpC6f3X0+15mGhFwJ+CSE6tN+l2iF9zp52vqP
Qwkjzm7+pdhZbmaIpcq9m1K+9lqPWJRz/3XXuqi+5xWIZ7NaxGvRjqaNAoGAdK2b
utZ2y48XoI3uPFsuP+A8kJX+CtWZrlE1NtmS7tnicdd19AtfmTuUL6fz0FwfW4Su
lQZfPT/5B339CaEiq/Xd1kDor+J7rvUHM2+5p+1A54gMRGCLRv92FQ4EON0RC1o9
m2I4SHysdO3XmjmdXmfp4BsgAKJIJzutvtbqlakCgYB+Cb10z37NJJ+WgjDt+yT2
yUNH17EAYgWXryfRgTyi2POHuJitd64Xzuy6oBVs3wVveYFM6PIKXlj8/DahYX5I
R2WIzoCNLL3bEZ+nC6Jofpb4kspoAeRporj29SgesK6QBYWHWX2H645RkRGYGpDo
51gjy9m/hSNqBbH2zmh04A==
-----END PRIVATE KEY-----
";
    /// 2019-02-01T09:00:00Z, the conformance tests' timestamp.
    const GOOGLE_TEST_TIME: u64 = 1_549_011_600;

    fn google_case(method: &str, object: &str, extra: &[(&str, &str)]) -> String {
        let signer = GcsSigner::from_pem(GOOGLE_TEST_ACCOUNT, GOOGLE_TEST_KEY).unwrap();
        let base = gcs_object_url("https://storage.googleapis.com", "test-bucket", object).unwrap();
        signer
            .presign(
                method,
                &base,
                extra,
                UNIX_EPOCH + Duration::from_secs(GOOGLE_TEST_TIME),
                Duration::from_secs(10),
            )
            .unwrap()
    }

    /// Google's conformance cases (storage/v1/v4_signatures.json) whose
    /// only signed header is `host`: the URL must be exactly theirs.
    #[test]
    fn presigns_gcs_as_google_conformance_tests_expect() {
        let credential = "X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=test-iam-credentials%40dummy-project-id.iam.gserviceaccount.com%2F20190201%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20190201T090000Z&X-Goog-Expires=10";
        // "Simple PUT"
        assert_eq!(
            google_case("PUT", "test-object", &[]),
            format!("https://storage.googleapis.com/test-bucket/test-object?{credential}&X-Goog-SignedHeaders=host&X-Goog-Signature=8adff1d4285739e31aa68e73767a46bc5511fde377497dbe08481bf5ceb34e29cc9a59921748d8ec3dd4085b7e9b7772a952afedfcdaecb3ae8352275b8b7c867f204e3db85076220a3127a8a9589302fc1181eae13b9b7fe41109ec8cdc93c1e8bac2d7a0cc32a109ca02d06957211326563ab3d3e678a0ba296e298b5fc5e14593c99d444c94724cc4be97015dbff1dca377b508fa0cb7169195de98d0e4ac96c42b918d28c8d92d33e1bd125ce0fb3cd7ad2c45dae65c22628378f6584971b8bf3945b26f2611eb651e9b6a8648970c1ecf386bb71327b082e7296c4e1ee2fc0bdd8983da80af375c817fb1ad491d0bc22c0f51dba0d66e2cffbc90803e47")
        );
        // "Query Parameter Ordering": extra parameters sort in among Google's.
        assert_eq!(
            google_case("GET", "test-object", &[("prefix", "/foo"), ("X-Goog-Meta-Foo", "bar")]),
            format!("https://storage.googleapis.com/test-bucket/test-object?{credential}&X-Goog-Meta-Foo=bar&X-Goog-SignedHeaders=host&prefix=%2Ffoo&X-Goog-Signature=a07745e1b3d59b85cbe11aa766df72c22468959e7217615dccb7f030234f66b60b37e480f30725ed51f29816362ca8286c619ebb66448ff1d370be2a4a48aacf20d3d2d6200ed17341a5791baf2ee5cd9c2823adacc6264f66c8a54fa887e1bce3c55cf78fb2f6a52618cf09d6f945f63d148052a7b66a75e075ff5065828a806b84bdc49a42399be7483225c720d5e18a6160f79d815f433e7921694fe1d041099851793c2581db0e5ca503cfb566e414f900ceede5f9b22030edd32ab20b6f7f9fb2afba89098b9364e03397c03a94eac3a140c99979b8786844fb4f6c62c1985378939dd1bbaea8e41b9100dda85a27733171cc78d96ee362ea2c3432f4d8")
        );
        // "Query Parameter Encoding": non-ASCII names, reserved characters.
        assert_eq!(
            google_case("GET", "test-object", &[("soufflé", "=%-_.~")]),
            format!("https://storage.googleapis.com/test-bucket/test-object?{credential}&X-Goog-SignedHeaders=host&souffl%C3%A9=%3D%25-_.~&X-Goog-Signature=38dd9ca622b80bca10f405e7d9ba0f0fbea719ca84d66078a484c5b54b1ce98e3fa8a0d2065216ed6ac03179be69312dabf428f8171b95994bdafe465a6f7893bacc7213a7bf4054ce2d78d4b60c34df24cc43e509ad7c81be47148d43a0e67d50d8fe38c85b0c63f9a51149b4f3335315946fef8ab34315ce3f6ce01f1831abb3eda5e7e211823855ed1767c65a8c7aeec357de096e3406897acfe092fead51bbea7df83e25a6180f80c8a0871e4901c370f77f5675f2405be7ccd55fd6dd22a87cf0adfafdb3f6fa99974fcf6c947b62294eebd7954e546c28f5490a6c50694c0e4882fcfe0d4a4ae8891a92579d6099a9b4c84d9f033a3b339163b6670b7e")
        );
    }

    #[test]
    fn gcs_object_urls_keep_slashes_and_encode_the_rest() {
        let url = gcs_object_url("http://127.0.0.1:4443/", "b", "path/with/amper&sand/a b.ext").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:4443/b/path/with/amper%26sand/a%20b.ext"
        );
        assert!(GcsSigner::from_pem("a@b", "not a key").is_err());
        assert!(GcsSigner::from_pem(
            "a@b",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }

    #[test]
    fn compact_dates() {
        assert_eq!(
            compact_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "20000229T000000Z"
        );
        assert_eq!(
            compact_date(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "20991231T235959Z"
        );
        assert_eq!(
            compact_date(UNIX_EPOCH + Duration::from_secs(GOOGLE_TEST_TIME)),
            "20190201T090000Z"
        );
    }
}
