//! Browser-form uploads at the edge (`docs/identity.md`, "Form uploads"): a `POST /bucket`
//! with a `multipart/form-data` body carries no `Authorization` header and no presigned
//! query — its identity is a POST policy and signature in the form fields before the
//! file. With `auth.mode = "verify"` weir reads those fields from the client (at most
//! 20 KiB, under the head deadline), verifies them (`weir_policy::sigv4::post`: the
//! tenant is the policy's signer), and only then lets the request on. The node gets the
//! head and the bytes read, then the rest of the body (the file and the closing
//! boundary) relayed as it comes, like any streamed body.
//!
//! For a pool that re-signs (`credentials`, or the tenant's `pool_credentials`) the
//! fields are re-signed per attempt ([`Form::request_bytes`]): the credential, date,
//! policy and signature become the pool's, `Content-Length` changes by as many bytes, and
//! the request goes path-style to the node's Host, as re-signed requests do.
//!
//! Driven by the request pipeline's edge stage (`proxy/admit.rs`): [`accept`] before identity verification (it replaces it for
//! form uploads), [`Form::request_bytes`] for each attempt's head.

use std::time::{Duration, Instant, SystemTime};

use weir_io::conn::Conn;
use weir_io::http::{write_request_head, BodyFraming, Header, Method, RequestHead};
use weir_policy::config::AuthMode;
use weir_policy::route::s3_target;
use weir_policy::s3code::S3Code;
use weir_policy::sigv4::post::{self, FormPrefix, VerifiedForm, PREFIX_BYTES_MAX};
use weir_policy::sigv4::{Identity, PayloadHash, Presigned, SigV4Error};

use crate::identity::{self, KeyCache, Refusal, Resigned};
use crate::settings::Settings;
use crate::shard::Epoch;

/// How long writing `100 Continue` to the client may take.
const CONTINUE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A verified form upload: what the node is sent, per attempt.
pub struct Form {
    /// The head for the node: the client's without `Expect` (weir answered it), framed
    /// as the body bytes still to relay from the client.
    head: RequestHead,
    /// Body bytes read from the client: the prefix, and any file bytes read with it.
    taken: Vec<u8>,
    prefix: FormPrefix,
    verified: VerifiedForm,
    /// The client's `Content-Length`.
    content_length: u64,
}

impl Form {
    /// The access key that signed the policy: the request's tenant.
    pub fn access_key(&self) -> &str {
        &self.verified.access_key
    }

    /// The head to relay the rest of the body with: no `Expect`, `Content-Length`
    /// framing of the bytes not yet read from the client.
    pub fn relay_head(&self) -> &RequestHead {
        &self.head
    }

    /// Whether every body byte is already held (the request can be sent again).
    pub fn is_complete(&self) -> bool {
        self.taken.len() as u64 == self.content_length
    }

    /// The head and the body bytes read so far, for node `node` of `pool`: re-signed for
    /// `tenant`'s identity there when the pool re-signs, else as the client sent them.
    /// Always `Some` (the client's head never goes as it came: `Expect` is gone). `tell`
    /// puts the pool's account of the client in the head (docs/client-address.md): a
    /// form's signature covers its fields, not the head, so that is always done.
    #[allow(clippy::too_many_arguments)]
    pub fn request_bytes(
        &self,
        settings: &Settings,
        cache: &KeyCache,
        tenant: usize,
        pool: usize,
        node: usize,
        now: SystemTime,
        tell: &dyn Fn(&mut RequestHead),
    ) -> Result<Option<Resigned>, SigV4Error> {
        let mut out = Vec::with_capacity(1024 + self.taken.len());
        let Some((access_key, key)) = identity::pool_signer(settings, cache, tenant, pool, now)?
        else {
            let mut head = self.head.clone();
            tell(&mut head);
            write_request_head(&head, &mut out);
            out.extend_from_slice(&self.taken);
            return Ok(Some(Resigned {
                head: out,
                chunks: None,
            }));
        };
        let identity = Identity {
            access_key: &access_key,
            key: &key,
        };
        let prefix = self
            .verified
            .resign(&self.prefix, &self.taken, &identity, now)?;
        let file_start = self.prefix.file_start();
        let length = self.content_length - file_start as u64 + prefix.len() as u64;
        let mut head = self.head.clone();
        tell(&mut head);
        head.target = identity::node_target(settings, &self.head)?;
        head.headers
            .retain(|h| !h.is("host") && !h.is("content-length"));
        let host = settings
            .node_entry(pool, node)
            .map_or_else(String::new, ToString::to_string);
        head.headers
            .insert(0, Header::new("Host", host.into_bytes()));
        head.headers.push(Header::new(
            "Content-Length",
            length.to_string().into_bytes(),
        ));
        write_request_head(&head, &mut out);
        out.extend_from_slice(&prefix);
        out.extend_from_slice(&self.taken[file_start..]);
        Ok(Some(Resigned {
            head: out,
            chunks: None,
        }))
    }
}

/// A form upload's boundary and bucket, when `head` is one weir verifies by its policy:
/// auth verifies, `POST` to a bucket, `multipart/form-data`, no `Authorization` header and
/// no presigned query (those are verified as signed requests).
fn form_upload(
    settings: &Settings,
    head: &RequestHead,
) -> Result<Option<(String, String)>, Refusal> {
    if settings.config.auth.mode != AuthMode::Verify
        || head.method != Method::Post
        || head.header("authorization").is_some()
    {
        return Ok(None);
    }
    let query = head.query().unwrap_or_default();
    if Presigned::is_presigned(query) || query.split('&').any(|p| p.starts_with("AWSAccessKeyId="))
    {
        return Ok(None);
    }
    let appliance = &settings.config.appliance;
    // An ambiguous target is not a form to read: classification refuses it.
    let Some(target) = s3_target(
        head.host(),
        head.path(),
        &appliance.virtual_host_suffixes,
        appliance.bucket_names,
    )
    .ok()
    .flatten()
    .filter(|t| !t.has_key()) else {
        return Ok(None);
    };
    let mut types = head.headers_named("content-type");
    let (Some(content_type), None) = (types.next(), types.next()) else {
        return Ok(None);
    };
    let Some(boundary) = post::form_boundary(content_type)? else {
        return Ok(None);
    };
    Ok(Some((boundary, target.bucket.into_owned())))
}

/// Reads and verifies a form upload's fields before its file. `Ok(None)`: not a form
/// upload (verify it as a signed request). `Err(Some(refusal))`: answer the client;
/// `Err(None)`: the client left (close without an answer).
pub async fn accept(
    ep: &Epoch,
    client: &mut Conn,
    head: &RequestHead,
) -> Result<Option<Box<Form>>, Option<Refusal>> {
    let settings = &ep.settings;
    let Some((boundary, bucket)) = form_upload(settings, head).map_err(Some)? else {
        return Ok(None);
    };
    let content_length = match head.framing {
        BodyFraming::Length(n) => n,
        BodyFraming::None => 0,
        _ => {
            return Err(Some(Refusal {
                status: 411,
                code: S3Code::MissingContentLength,
                message: "You must provide the Content-Length HTTP header.".into(),
                reason: "form_malformed",
            }))
        }
    };
    let aws_chunked = head
        .header("x-amz-content-sha256")
        .and_then(|v| PayloadHash::parse(v).ok())
        .is_some_and(|p| p.is_aws_chunked());
    if aws_chunked {
        return Err(Some(
            SigV4Error::MalformedPostRequest("a form upload cannot be aws-chunked").into(),
        ));
    }
    if head.header("x-amz-security-token").is_some() {
        return Err(Some(identity::security_token_refusal()));
    }
    if head.expect_continue {
        // The fields come before any node hears of the request, so weir asks for them.
        let sent = monoio::time::timeout(
            CONTINUE_WRITE_TIMEOUT,
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n"),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return Err(None);
        }
    }
    let (prefix, taken) = read_prefix(ep, client, &boundary, content_length).await?;

    let now = SystemTime::now();
    let mut keys = identity::tenant_keys(settings, &ep.keys);
    let verified = prefix
        .verify(&bucket, &mut keys, now, settings.config.auth.skew_max)
        .map_err(|e| Some(e.into()))?;
    if verified.security_token.is_some() {
        return Err(Some(identity::security_token_refusal()));
    }
    verified
        .check_room(prefix.file_bytes_max(content_length))
        .map_err(|e| Some(e.into()))?;

    let mut relay = head.clone();
    relay.headers.retain(|h| !h.is("expect"));
    relay.expect_continue = false;
    relay.framing = BodyFraming::Length(content_length - taken.len() as u64);
    Ok(Some(Box::new(Form {
        head: relay,
        taken,
        prefix,
        verified,
        content_length,
    })))
}

/// Reads body bytes until the file part's headers are in (at most [`PREFIX_BYTES_MAX`]
/// and never beyond the body), under the head deadline: the prefix and the bytes read.
async fn read_prefix(
    ep: &Epoch,
    client: &mut Conn,
    boundary: &str,
    content_length: u64,
) -> Result<(FormPrefix, Vec<u8>), Option<Refusal>> {
    let want = content_length.min(PREFIX_BYTES_MAX as u64) as usize;
    let deadline = Instant::now() + ep.settings.config.http.head_timeout;
    let mut taken = Vec::with_capacity(want.min(4096));
    loop {
        let take = client.buffered().len().min(want - taken.len());
        taken.extend_from_slice(&client.buffered()[..take]);
        client.consume(take);
        let complete = taken.len() as u64 == content_length;
        match post::scan(&taken, boundary, complete) {
            Ok(Some(prefix)) => return Ok((prefix, taken)),
            Ok(None) => {}
            Err(e) => return Err(Some(e.into())),
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(wait, client.read_more()).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Err(None),
            Err(_) => {
                return Err(Some(Refusal {
                    status: 408,
                    code: S3Code::RequestTimeout,
                    message: "the form fields before the file did not arrive in time".into(),
                    reason: "form_malformed",
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_io::http::{parse_request, HeadLimits};
    use weir_policy::config::Config;

    fn settings(mode: &str) -> Settings {
        let text = format!(
            "[auth]\nmode = \"{mode}\"\nsecrets_file = \"x\"\n\
             [appliance]\nvirtual_host_suffixes = [\"s3.weir.test\"]\n\
             [[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\n"
        );
        Settings::resolve(Config::from_toml_str(&text, "t").unwrap()).unwrap()
    }

    fn head(raw: &str) -> RequestHead {
        let limits = HeadLimits {
            header_bytes_max: 16 << 10,
            headers_count_max: 64,
        };
        parse_request(raw.as_bytes(), &limits).unwrap().unwrap().0
    }

    #[test]
    fn which_requests_are_form_uploads() {
        let s = settings("verify");
        let ct = "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 10\r\n";
        let form = |raw: &str| form_upload(&s, &head(raw));
        assert_eq!(
            form(&format!("POST /photos HTTP/1.1\r\nHost: weir\r\n{ct}\r\n")),
            Ok(Some(("xyz".into(), "photos".into())))
        );
        assert_eq!(
            form(&format!(
                "POST / HTTP/1.1\r\nHost: photos.s3.weir.test\r\n{ct}\r\n"
            )),
            Ok(Some(("xyz".into(), "photos".into())))
        );
        // Signed requests, an object path, other types and methods are not forms.
        for raw in [
            format!("POST /photos HTTP/1.1\r\nHost: weir\r\nAuthorization: AWS4-HMAC-SHA256 x\r\n{ct}\r\n"),
            format!("POST /photos?X-Amz-Signature=00 HTTP/1.1\r\nHost: weir\r\n{ct}\r\n"),
            format!("POST /photos?AWSAccessKeyId=AK HTTP/1.1\r\nHost: weir\r\n{ct}\r\n"),
            format!("POST /photos/key HTTP/1.1\r\nHost: weir\r\n{ct}\r\n"),
            format!("PUT /photos HTTP/1.1\r\nHost: weir\r\n{ct}\r\n"),
            "POST /photos HTTP/1.1\r\nHost: weir\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n".into(),
            format!("POST /photos HTTP/1.1\r\nHost: weir\r\n{ct}Content-Type: multipart/form-data; boundary=abc\r\n\r\n"),
        ] {
            assert_eq!(form(&raw), Ok(None), "{raw}");
        }
        // A form type without a boundary is refused as a malformed form.
        let r = form("POST /photos HTTP/1.1\r\nHost: weir\r\nContent-Type: multipart/form-data\r\nContent-Length: 1\r\n\r\n")
            .unwrap_err();
        assert_eq!(
            (r.status, r.code, r.reason),
            (400, S3Code::MalformedPOSTRequest, "form_malformed")
        );
        // With verification off, forms pass as they come.
        let off = settings("off");
        assert_eq!(
            form_upload(
                &off,
                &head(&format!("POST /photos HTTP/1.1\r\nHost: weir\r\n{ct}\r\n"))
            ),
            Ok(None)
        );
    }
}
