//! A CA and one certificate it signed, made at run time (rcgen) as PEM files in one directory:
//! what `ringcache up --tls` gives a local cluster, and what the TLS tests and the churn
//! harness's `--tls` mode use. The certificate serves every listener and, as a client
//! certificate, every link. Nothing is committed.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The CA's certificate, in the directory.
pub const CA_FILE: &str = "ca.crt";
/// The certificate of every listener and link, and its key.
pub const CERT_FILE: &str = "node.crt";
pub const KEY_FILE: &str = "node.key";

/// Makes a fresh CA and a certificate for `hosts` (names, or addresses as text) in `dir`,
/// created if missing; the key file is readable by its owner only.
pub fn create(dir: &Path, hosts: &[String]) -> Result<(), String> {
    let e = |e: rcgen::Error| e.to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ringcache local CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "ringcache node");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(e)?;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write(CA_FILE, ca.pem())?;
    write(CERT_FILE, cert.pem())?;
    write_private(&dir.join(KEY_FILE), &key.serialize_pem())
}

/// Writes `text` to `path`, readable by its owner only from the moment the file exists.
pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // A file that existed keeps its old mode through `open`: narrow it too.
    restrict(path)?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether `dir` holds the three files already.
pub fn exists(dir: &Path) -> bool {
    [CA_FILE, CERT_FILE, KEY_FILE]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// `dir`'s file `name`.
pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[cfg(unix)]
fn restrict(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> Result<(), String> {
    Ok(())
}
