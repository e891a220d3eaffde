//! [`parse`] on the first bytes of a connection, as a PROXY-protocol listener sees them.
//!
//! Checked, beyond "never panics":
//! - a header never takes more than the input, nor more than the protocol's bound
//!   (107 bytes for v1, 16 + 2048 for v2), and ends where its version says (CRLF, or the
//!   v2 length);
//! - the bytes in two pieces give the same answer as whole: every proper prefix of an
//!   accepted header is `Incomplete`, and what follows a header never changes it;
//! - addresses come with the `PROXY` command of a TCP family only, and a v2 header built by
//!   [`encode_v2`] from them parses back to the same addresses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_io::proxy_protocol::{encode_v2, parse, Parsed, V1_BYTES_MAX, V2_BYTES_MAX};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    match &whole {
        Ok(Parsed::Header(header, n)) => {
            let n = *n;
            assert!(n <= data.len());
            match header.version {
                1 => {
                    assert!(n <= V1_BYTES_MAX);
                    assert_eq!(&data[n - 2..n], b"\r\n");
                    assert!(!data[..n - 2].contains(&b'\r'));
                }
                2 => {
                    assert!(n <= V2_BYTES_MAX);
                    assert_eq!(n, 16 + usize::from(u16::from_be_bytes([data[14], data[15]])));
                }
                v => panic!("version {v}"),
            }
            for cut in 0..n {
                assert_eq!(parse(&data[..cut]), Ok(Parsed::Incomplete), "cut {cut} of {n}");
            }
            assert_eq!(parse(&data[..n]), whole);
            if let Some(a) = header.addresses {
                assert_eq!(a.source.is_ipv4(), a.destination.is_ipv4());
                let again = encode_v2(a.source, a.destination);
                match parse(&again) {
                    Ok(Parsed::Header(h, m)) => {
                        assert_eq!((h.addresses, m), (Some(a), again.len()));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        Ok(Parsed::NotProxy) => {
            // Decided on the first bytes alone: more input cannot make it a header.
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n");
            assert_eq!(parse(&longer), Ok(Parsed::NotProxy));
        }
        Ok(Parsed::Incomplete) => assert!(data.len() < V2_BYTES_MAX),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
