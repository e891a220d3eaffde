//! Test certificates, generated per test with rcgen: a CA, server certificates for the
//! names a test needs (DNS names and IP addresses), and client certificates for mTLS. The
//! PEM files go to the test's scratch folder, where weir's config and the clients find
//! them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A test certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Where its certificate (PEM) was written.
    pub pem_path: PathBuf,
}

/// A certificate and its key, as files.
pub struct Issued {
    /// The certificate chain (leaf, then the CA), PEM.
    pub cert: PathBuf,
    /// The private key (PKCS#8), PEM.
    pub key: PathBuf,
}

impl Ca {
    /// A new CA named `name`; its certificate is written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("weir test CA {name}"));
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let pem_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_path, issuer.pem()).expect("write CA");
        Ca { issuer, pem_path }
    }

    /// A server certificate valid for `names` (DNS names or IP addresses), written as
    /// `dir/<stem>.pem` and `dir/<stem>.key`.
    pub fn server(&self, dir: &Path, stem: &str, names: &[&str]) -> Issued {
        self.issue(dir, stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose DNS name is `name` (the identity weir reads).
    pub fn client(&self, dir: &Path, stem: &str, name: &str) -> Issued {
        self.issue(dir, stem, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let issued = Issued {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&issued.cert, format!("{}{}", cert.pem(), self.issuer.pem()))
            .expect("write certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}
