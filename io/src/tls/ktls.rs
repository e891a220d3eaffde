//! The kernel TLS interface (Documentation/networking/tls.rst): attach the `tls`
//! upper-layer protocol, then set each direction's cipher, key, IV/salt and record
//! sequence number.
//!
//! Which ciphers work is probed once on a loopback socket pair, before any session's
//! secrets are handed over: the `tls` module may be missing, and the kernel's AEAD
//! implementations (`gcm`, `chacha20poly1305`) may be modules that are not there. A
//! cipher that failed the probe is never tried, so a session never loses its keys to
//! a refusal — it takes the user-space path instead.

use rustls::{CipherSuite, ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// Ciphers the kernel accepted in the probe.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Support {
    aes128gcm: bool,
    aes256gcm: bool,
    chacha20: bool,
}

impl Support {
    pub(super) fn any(self) -> bool {
        self.aes128gcm || self.aes256gcm || self.chacha20
    }
}

/// Tries each cipher's transmit and receive keys on a fresh loopback connection.
pub(super) fn probe() -> Support {
    let zero = |cipher: Cipher, key_len: usize| -> io::Result<()> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let _server = listener.accept()?;
        let fd = client.as_raw_fd();
        ulp_attach(fd)?;
        let key = [0u8; 32];
        let iv = [0u8; 12];
        let version = libc::TLS_1_3_VERSION;
        set_raw(fd, libc::TLS_TX, version, 0, cipher, &key[..key_len], &iv)?;
        set_raw(fd, libc::TLS_RX, version, 0, cipher, &key[..key_len], &iv)
    };
    let aes128 = zero(Cipher::Aes128Gcm, 16);
    let support = Support {
        aes128gcm: aes128.is_ok(),
        aes256gcm: zero(Cipher::Aes256Gcm, 32).is_ok(),
        chacha20: zero(Cipher::Chacha20Poly1305, 32).is_ok(),
    };
    match (&aes128, support.any()) {
        (_, true) => tracing::info!(?support, "kernel TLS available"),
        (Err(e), false) => tracing::info!(
            error = %e,
            "kernel TLS unavailable (no tls module, or no AEAD the kernel can load): \
             TLS records are encrypted in user space"
        ),
        (Ok(()), false) => {}
    }
    support
}

/// Whether the kernel takes the negotiated version and cipher.
pub(super) fn offloadable(conn: &rustls::Connection, support: Support) -> bool {
    let version = conn.protocol_version();
    let suite = conn.negotiated_cipher_suite().map(|s| s.suite());
    if !matches!(
        version,
        Some(ProtocolVersion::TLSv1_2) | Some(ProtocolVersion::TLSv1_3)
    ) {
        return false;
    }
    match suite {
        Some(
            CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ) => support.aes128gcm,
        Some(
            CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ) => support.aes256gcm,
        Some(
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ) => support.chacha20,
        _ => false,
    }
}

/// Attaches the `tls` ULP (harmless alone: without keys the socket passes bytes
/// through).
pub(super) fn ulp_attach(fd: RawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: setsockopt reads `name` for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets both directions' keys.
pub(super) fn install(
    fd: RawFd,
    version: Option<ProtocolVersion>,
    secrets: &ExtractedSecrets,
) -> io::Result<()> {
    let version = match version {
        Some(ProtocolVersion::TLSv1_3) => libc::TLS_1_3_VERSION,
        Some(ProtocolVersion::TLSv1_2) => libc::TLS_1_2_VERSION,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "protocol version not offloadable",
            ))
        }
    };
    set(fd, libc::TLS_TX, version, secrets.tx.0, &secrets.tx.1)?;
    set(fd, libc::TLS_RX, version, secrets.rx.0, &secrets.rx.1)
}

/// The ciphers the kernel implements for TLS.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

fn set(
    fd: RawFd,
    direction: libc::c_int,
    version: u16,
    seq: u64,
    secrets: &ConnectionTrafficSecrets,
) -> io::Result<()> {
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (Cipher::Chacha20Poly1305, key, iv)
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cipher not offloadable",
            ))
        }
    };
    set_raw(
        fd,
        direction,
        version,
        seq,
        cipher,
        key.as_ref(),
        iv.as_ref(),
    )
}

/// Sets one direction's crypto state. `iv` is the 12-byte nonce base; for AES-GCM the
/// kernel wants it as a 4-byte salt and an 8-byte IV (the 1.3 nonce base, or the 1.2
/// implicit salt and first explicit nonce, split alike).
pub(super) fn set_raw(
    fd: RawFd,
    direction: libc::c_int,
    version: u16,
    seq: u64,
    cipher: Cipher,
    key: &[u8],
    iv: &[u8],
) -> io::Result<()> {
    let rec_seq = seq.to_be_bytes();
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "key or IV length");
    if iv.len() != 12 {
        return Err(bad());
    }
    // The AES-GCM structs differ only in key size: one body for both.
    macro_rules! aes_gcm {
        ($info:ty, $cipher_type:expr) => {{
            // SAFETY: a plain C struct of integers and byte arrays.
            let mut info: $info = unsafe { std::mem::zeroed() };
            if key.len() != info.key.len() {
                return Err(bad());
            }
            info.info.version = version;
            info.info.cipher_type = $cipher_type;
            info.key.copy_from_slice(key);
            info.salt.copy_from_slice(&iv[..4]);
            info.iv.copy_from_slice(&iv[4..]);
            info.rec_seq = rec_seq;
            setsockopt(fd, direction, &info)
        }};
    }
    match cipher {
        Cipher::Aes128Gcm => aes_gcm!(
            libc::tls12_crypto_info_aes_gcm_128,
            libc::TLS_CIPHER_AES_GCM_128
        ),
        Cipher::Aes256Gcm => aes_gcm!(
            libc::tls12_crypto_info_aes_gcm_256,
            libc::TLS_CIPHER_AES_GCM_256
        ),
        Cipher::Chacha20Poly1305 => {
            let mut info: libc::tls12_crypto_info_chacha20_poly1305 =
                // SAFETY: as above.
                unsafe { std::mem::zeroed() };
            if key.len() != info.key.len() {
                return Err(bad());
            }
            info.info.version = version;
            info.info.cipher_type = libc::TLS_CIPHER_CHACHA20_POLY1305;
            info.key.copy_from_slice(key);
            info.iv.copy_from_slice(iv);
            info.rec_seq = rec_seq;
            setsockopt(fd, direction, &info)
        }
    }
}

fn setsockopt<T>(fd: RawFd, direction: libc::c_int, info: &T) -> io::Result<()> {
    // SAFETY: the kernel reads size_of::<T>() bytes from `info` during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TLS,
            direction,
            (info as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
