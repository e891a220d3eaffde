//! Identity at the edge (`docs/identity.md`): the `[auth]` table, each pool's
//! `credentials`, and the secrets file that maps tenants' access keys to their secrets.
//!
//! Config stays pure: this module names files, it does not read them. The appliance
//! reads the secrets file and any `secret_file` at start-up and on every reload
//! (`appliance/src/settings.rs`) and hands the text to [`parse_secrets`], so a reload
//! picks up rotated keys. Secrets never reach a log line: [`Secret`]'s `Debug` prints
//! `"<redacted>"`, and no error message quotes a secret value.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{ConfigError, Invalid, KeyPath};
use super::units::{format_duration, format_size, ConfigDuration, ConfigSize};

/// Longest access key id (AWS documents 16..=128 characters).
const ACCESS_KEY_LEN_MAX: usize = 128;
/// Longest secret: AWS's are 40 characters; anything past 1 KiB is a pasted file.
const SECRET_LEN_MAX: usize = 1024;
/// Longest region name.
const REGION_LEN_MAX: usize = 64;
/// Most tenant keys in one secrets file (the table is held on every core).
pub const SECRETS_MAX: usize = 100_000;
/// Largest secrets file read.
pub const SECRETS_FILE_BYTES_MAX: u64 = 16 << 20;
/// Skew bound: S3 allows 15 minutes; below a second clocks never agree, above an hour a
/// captured request stays replayable too long.
const SKEW_MIN: Duration = Duration::from_secs(1);
const SKEW_MAX: Duration = Duration::from_secs(3600);
/// `chunk_bytes_max` bounds: AWS's smallest chunk is 8 KiB; past 64 MiB a few uploads
/// hold gigabytes.
const CHUNK_BYTES_MIN: u64 = 8 << 10;
const CHUNK_BYTES_LIMIT: u64 = 64 << 20;

/// `[auth]`: whether weir verifies client signatures, against which secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `off` (default): requests pass unverified. `verify`: every request must carry a
    /// valid SigV4 signature by a key of the secrets file, or it is answered at the edge.
    pub mode: AuthMode,
    /// The tenants' `access_key = secret` file, as written (relative paths are taken
    /// from the config file's folder by the appliance). Required when `mode = "verify"`.
    pub secrets_file: Option<PathBuf>,
    /// How far a header-signed request's time may be from weir's clock (and how early a
    /// presigned URL may be used).
    pub skew_max: Duration,
    /// Largest `aws-chunked` chunk weir holds to check or re-sign its signature (one
    /// chunk of memory per streaming upload).
    pub chunk_bytes_max: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            secrets_file: None,
            skew_max: Duration::from_secs(15 * 60),
            chunk_bytes_max: 1 << 20,
        }
    }
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No verification at the edge.
    #[default]
    Off,
    /// Verify every request's SigV4 signature before anything reaches a node.
    Verify,
}

/// A pool's `credentials`: the identity weir re-signs requests with for that pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolCredentials {
    /// The pool's access key id.
    pub access_key: String,
    /// Where its secret comes from.
    pub secret: SecretSource,
    /// The region the pool's nodes expect in the credential scope.
    pub region: String,
}

/// A pool secret, inline or in a file of its own (read at load and reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `secret = "..."` in the config itself.
    Inline(Secret),
    /// `secret_file = "path"`: the file's content, surrounding whitespace removed.
    File(PathBuf),
}

/// A secret access key. `Debug` never shows it; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A checked secret: 1..=1024 printable ASCII characters.
    pub fn new(value: &str) -> Result<Self, &'static str> {
        if value.is_empty() {
            return Err("the secret is empty");
        }
        if value.len() > SECRET_LEN_MAX {
            return Err("the secret is longer than 1024 characters");
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the secret must be printable ASCII without spaces");
        }
        Ok(Self(value.to_owned()))
    }

    /// The secret's bytes, to derive signing keys from.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Tenants' secrets by access key id, as read from the secrets file.
pub type Secrets = HashMap<String, Secret>;

// === raw ===

/// `[auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    pub(crate) mode: Option<AuthMode>,
    pub(crate) secrets_file: Option<String>,
    pub(crate) skew_max: Option<ConfigDuration>,
    pub(crate) chunk_bytes_max: Option<ConfigSize>,
}

/// A pool's `credentials` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredentials {
    pub(crate) access_key: String,
    pub(crate) secret: Option<String>,
    pub(crate) secret_file: Option<String>,
    pub(crate) region: Option<String>,
}

impl fmt::Debug for RawCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCredentials")
            .field("access_key", &self.access_key)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("region", &self.region)
            .finish()
    }
}

// === validation ===

/// Validates `[auth]`.
pub(crate) fn auth(path: &KeyPath, raw: RawAuth) -> Result<Auth, Invalid> {
    let d = Auth::default();
    let mode = raw.mode.unwrap_or(d.mode);
    let secrets_file = match raw.secrets_file {
        Some(p) if p.trim().is_empty() => {
            return Err(Invalid::new(
                &path.key("secrets_file"),
                "an empty path; name the access_key = secret file",
            ))
        }
        Some(p) => Some(PathBuf::from(p)),
        None => None,
    };
    if mode == AuthMode::Verify && secrets_file.is_none() {
        return Err(Invalid::new(
            &path.key("mode"),
            "\"verify\" needs auth.secrets_file (the tenants' access_key = secret file)",
        ));
    }
    let skew_max = raw.skew_max.map_or(d.skew_max, |ConfigDuration(v)| v);
    if !(SKEW_MIN..=SKEW_MAX).contains(&skew_max) {
        return Err(Invalid::new(
            &path.key("skew_max"),
            format!(
                "{} is outside {}..={}",
                format_duration(skew_max),
                format_duration(SKEW_MIN),
                format_duration(SKEW_MAX)
            ),
        ));
    }
    let chunk_bytes_max = raw
        .chunk_bytes_max
        .map_or(d.chunk_bytes_max, |ConfigSize(v)| v);
    if !(CHUNK_BYTES_MIN..=CHUNK_BYTES_LIMIT).contains(&chunk_bytes_max) {
        return Err(Invalid::new(
            &path.key("chunk_bytes_max"),
            format!(
                "{} is outside {}..={}",
                format_size(chunk_bytes_max),
                format_size(CHUNK_BYTES_MIN),
                format_size(CHUNK_BYTES_LIMIT)
            ),
        ));
    }
    Ok(Auth {
        mode,
        secrets_file,
        skew_max,
        chunk_bytes_max,
    })
}

/// Validates a pool's `credentials`.
pub(crate) fn credentials(path: &KeyPath, raw: RawCredentials) -> Result<PoolCredentials, Invalid> {
    check_access_key(&raw.access_key).map_err(|why| Invalid::new(&path.key("access_key"), why))?;
    let secret = match (raw.secret, raw.secret_file) {
        (Some(s), None) => SecretSource::Inline(
            Secret::new(&s).map_err(|why| Invalid::new(&path.key("secret"), why))?,
        ),
        (None, Some(f)) if !f.trim().is_empty() => SecretSource::File(PathBuf::from(f)),
        (None, Some(_)) => return Err(Invalid::new(&path.key("secret_file"), "an empty path")),
        (Some(_), Some(_)) => {
            return Err(Invalid::new(
                &path.key("secret_file"),
                "give secret or secret_file, not both",
            ))
        }
        (None, None) => return Err(Invalid::new(path, "credentials need secret or secret_file")),
    };
    let region = raw.region.unwrap_or_else(|| "us-east-1".to_owned());
    let region_ok = (1..=REGION_LEN_MAX).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(Invalid::new(
            &path.key("region"),
            format!("{region:?} is not a region name (1..={REGION_LEN_MAX} of a-z 0-9 -)"),
        ));
    }
    Ok(PoolCredentials {
        access_key: raw.access_key,
        secret,
        region,
    })
}

/// An access key id goes into the credential scope (`AKID/date/region/s3/...`), so it
/// must not contain `/`, `,`, `=` or spaces.
fn check_access_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > ACCESS_KEY_LEN_MAX {
        return Err(format!(
            "an access key id has 1..={ACCESS_KEY_LEN_MAX} characters"
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(format!(
            "{key:?} is not an access key id (A-Z a-z 0-9 _ - .)"
        ));
    }
    Ok(())
}

// === the secrets file ===

/// Parses a secrets file: one `access_key = secret` per line, `#` comments and blank
/// lines ignored; the secret may be in double quotes, so a flat TOML table of strings
/// is also a valid secrets file. Errors name `origin:line` and the access key, never the
/// secret. Duplicate keys are an error (a rotation should replace, not shadow).
pub fn parse_secrets(text: &str, origin: &str) -> Result<Secrets, ConfigError> {
    let err = |line: usize, key: &str, message: String| ConfigError {
        origin: origin.to_owned(),
        line: Some(line),
        key: key.to_owned(),
        message,
    };
    let mut secrets = Secrets::new();
    for (i, raw_line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(
                line_no,
                "",
                "expected `access_key = secret`".to_owned(),
            ));
        };
        let key = unquote(key.trim());
        check_access_key(key).map_err(|why| err(line_no, "", why))?;
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(rest) => rest.strip_suffix('"').ok_or_else(|| {
                err(
                    line_no,
                    key,
                    "the secret's closing quote is missing".to_owned(),
                )
            })?,
            None => value,
        };
        let secret = Secret::new(value).map_err(|why| err(line_no, key, why.to_owned()))?;
        if secrets.insert(key.to_owned(), secret).is_some() {
            return Err(err(
                line_no,
                key,
                "this access key is listed twice".to_owned(),
            ));
        }
        if secrets.len() > SECRETS_MAX {
            return Err(err(line_no, key, format!("more than {SECRETS_MAX} keys")));
        }
    }
    Ok(secrets)
}

/// A TOML key may be quoted (`"AKID" = "secret"`).
fn unquote(key: &str) -> &str {
    key.strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const POOL: &str = "\n[[pool]]\nname = \"default\"\nnodes = [\"127.0.0.1:9001\"]\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, "t.toml")
    }

    #[track_caller]
    fn rejects(text: &str, line: usize, key: &str, needle: &str) {
        let e = parse(text).expect_err("accepted");
        assert_eq!((e.line, e.key.as_str()), (Some(line), key), "{e}");
        assert!(
            e.message.contains(needle),
            "{e:?} should mention {needle:?}"
        );
    }

    #[test]
    fn defaults_are_off_and_15_minutes() {
        let c = parse(POOL).unwrap();
        assert_eq!(c.auth, Auth::default());
        assert_eq!(c.auth.mode, AuthMode::Off);
        assert_eq!(c.auth.skew_max, Duration::from_secs(900));
        assert_eq!(c.pools[0].credentials, None);
    }

    #[test]
    fn auth_and_credentials_parse() {
        let text = "[auth]\nmode = \"verify\"\nsecrets_file = \"tenants.secrets\"\nskew_max = \"5m\"\n\
                    [[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\n\
                    credentials = { access_key = \"SITEA\", secret = \"s3cr3t\", region = \"eu-west-1\" }\n\
                    [[pool]]\nname = \"b\"\nnodes = [\"127.0.0.1:9002\"]\n\
                    credentials = { access_key = \"SITEB\", secret_file = \"b.secret\" }\n";
        let c = parse(text).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Verify);
        assert_eq!(c.auth.secrets_file, Some(PathBuf::from("tenants.secrets")));
        assert_eq!(c.auth.skew_max, Duration::from_secs(300));
        let a = c.pools[0].credentials.as_ref().unwrap();
        assert_eq!(a.access_key, "SITEA");
        assert_eq!(
            a.secret,
            SecretSource::Inline(Secret::new("s3cr3t").unwrap())
        );
        assert_eq!(a.region, "eu-west-1");
        let b = c.pools[1].credentials.as_ref().unwrap();
        assert_eq!(b.secret, SecretSource::File(PathBuf::from("b.secret")));
        assert_eq!(b.region, "us-east-1");
        // Debug of the whole config never shows a secret.
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn verify_needs_a_secrets_file() {
        rejects(
            &format!("[auth]\nmode = \"verify\"\n{POOL}"),
            2,
            "auth.mode",
            "secrets_file",
        );
    }

    #[test]
    fn unknown_mode_and_key_are_rejected() {
        rejects(
            &format!("[auth]\nmode = \"sigv2\"\n{POOL}"),
            2,
            "auth.mode",
            "sigv2",
        );
        rejects(
            &format!("[auth]\nsecret = \"x\"\n{POOL}"),
            2,
            "auth.secret",
            "unknown key",
        );
    }

    #[test]
    fn skew_out_of_bounds() {
        rejects(
            &format!("[auth]\nskew_max = \"2h\"\n{POOL}"),
            2,
            "auth.skew_max",
            "outside",
        );
    }

    #[test]
    fn chunk_bound_parses_and_is_bounded() {
        let c = parse(&format!("[auth]\nchunk_bytes_max = \"256KiB\"\n{POOL}")).unwrap();
        assert_eq!(c.auth.chunk_bytes_max, 256 << 10);
        assert_eq!(parse(POOL).unwrap().auth.chunk_bytes_max, 1 << 20);
        rejects(
            &format!("[auth]\nchunk_bytes_max = \"1KiB\"\n{POOL}"),
            2,
            "auth.chunk_bytes_max",
            "outside",
        );
        rejects(
            &format!("[auth]\nchunk_bytes_max = \"1GiB\"\n{POOL}"),
            2,
            "auth.chunk_bytes_max",
            "outside",
        );
    }

    #[test]
    fn credentials_rejections_name_the_key() {
        let pool = |creds: &str| {
            format!("[[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\ncredentials = {{ {creds} }}\n")
        };
        rejects(
            &pool("access_key = \"A/B\", secret = \"x\""),
            4,
            "pool[0].credentials.access_key",
            "not an access key",
        );
        rejects(
            &pool("access_key = \"A\""),
            4,
            "pool[0].credentials",
            "secret or secret_file",
        );
        rejects(
            &pool("access_key = \"A\", secret = \"x\", secret_file = \"f\""),
            4,
            "pool[0].credentials.secret_file",
            "not both",
        );
        rejects(
            &pool("access_key = \"A\", secret = \"has space\""),
            4,
            "pool[0].credentials.secret",
            "printable",
        );
        rejects(
            &pool("access_key = \"A\", secret = \"x\", region = \"US East\""),
            4,
            "pool[0].credentials.region",
            "region",
        );
        rejects(
            &pool("access_key = \"A\", secret = \"x\", token = \"t\""),
            4,
            "pool[0].credentials.token",
            "unknown key",
        );
    }

    #[test]
    fn secret_errors_never_quote_the_secret() {
        let e = parse(
            "[[pool]]\nname = \"a\"\nnodes = [\"127.0.0.1:9001\"]\n\
             credentials = { access_key = \"A\", secret = \"top secret\" }\n",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("top secret"), "{e}");
    }

    #[test]
    fn secrets_file_both_spellings() {
        let s = parse_secrets(
            "# tenants\nAKIDONE = plain-secret\n\n\"AKIDTWO\" = \"quoted/secret+x\"\n",
            "s",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s["AKIDONE"].expose(), b"plain-secret");
        assert_eq!(s["AKIDTWO"].expose(), b"quoted/secret+x");
    }

    #[test]
    fn secrets_file_errors_name_the_line_not_the_secret() {
        let e = parse_secrets("A = one\nB = two words\n", "tenants.secrets").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "B"));
        assert!(e.to_string().starts_with("tenants.secrets:2: B: "), "{e}");
        assert!(!e.to_string().contains("words"), "{e}");
        let e = parse_secrets("A = one\nA = two\n", "s").unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("twice"));
        let e = parse_secrets("just-a-line\n", "s").unwrap_err();
        assert!(e.message.contains("access_key = secret"));
        let e = parse_secrets("A = \"open\n", "s").unwrap_err();
        assert!(e.message.contains("quote"));
    }
}
