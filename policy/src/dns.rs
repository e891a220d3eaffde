//! DNS name syntax shared by node addresses, virtual-host suffixes and bucket names.

/// Longest DNS name in presentation form without the trailing dot (RFC 1035 §2.3.4).
const NAME_LEN_MAX: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const LABEL_LEN_MAX: usize = 63;

/// Whether `name` is a syntactically valid DNS host name: dot-separated labels of ASCII
/// letters, digits and `-`, no label starting or ending with `-`, and a last label that is
/// not all digits (so a mistyped IPv4 address such as `10.0.0.256` is not taken for a name).
pub(crate) fn is_host_name(name: &str) -> bool {
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return false;
    }
    let mut last_all_digits = false;
    for label in name.split('.') {
        let bytes = label.as_bytes();
        let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
            return false; // empty label: leading, trailing or doubled dot
        };
        if bytes.len() > LABEL_LEN_MAX || *first == b'-' || *last == b'-' {
            return false;
        }
        if !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return false;
        }
        last_all_digits = bytes.iter().all(u8::is_ascii_digit);
    }
    !last_all_digits
}

#[cfg(test)]
mod tests {
    use super::is_host_name;

    #[test]
    fn accepts_names() {
        for ok in [
            "localhost",
            "s3.example.com",
            "node-1.rack2",
            "a",
            "x1",
            "1x.example",
        ] {
            assert!(is_host_name(ok), "{ok}");
        }
    }

    #[test]
    fn rejects_non_names() {
        let long_label = "a".repeat(64);
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a_b",
            "10.0.0.256",
            "1234",
            "ä.example",
            long_label.as_str(),
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
