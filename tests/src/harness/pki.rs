//! Throw-away TLS certificates for the tests, made with the `openssl` command: a CA, a server
//! certificate for `localhost` and `127.0.0.1` (as subjectAltNames: rustls ignores the CN) and,
//! on demand, client certificates for mutual TLS, all P-256 keys, all PEM files in one
//! directory that the caller owns. Used by the Mosquitto TLS listener and the TLS terminator in
//! front of the broker ([`super::socat`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// `openssl req` arguments of a new P-256 key without a passphrase.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A test CA and the server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestPki {
    dir: PathBuf,
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
    ca_key: PathBuf,
    /// The server certificate (PEM) for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestPki {
    /// Creates the CA and the server certificate in `dir` (created if missing).
    pub fn generate(dir: &Path) -> Result<TestPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = TestPki {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        // A name of its own, so another test CA is a stranger, not a namesake.
        let ca_subject = format!(
            "/CN=Runnel test CA {}",
            dir.file_name().map_or("".into(), |n| n.to_string_lossy())
        );
        run_openssl(dir, |c| {
            c.args(["req", "-x509"])
                .args(EC_KEY)
                .arg("-keyout")
                .arg(&pki.ca_key)
                .arg("-out")
                .arg(&pki.ca)
                .args(["-days", "3650", "-subj"])
                .arg(&ca_subject)
        })?;
        pki.sign(
            "server",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n",
        )?;
        Ok(pki)
    }

    /// A client certificate for `name`, signed by this CA: (certificate, key) PEM files.
    pub fn client_cert(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        self.sign(
            name,
            &format!("/CN={name}"),
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        )
    }

    /// A new key `<stem>.key` and a certificate `<stem>.pem` for `subject` with the
    /// extensions `ext`, signed by the CA.
    fn sign(&self, stem: &str, subject: &str, ext: &str) -> Result<(PathBuf, PathBuf)> {
        let dir = &self.dir;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        let csr = dir.join(format!("{stem}.csr"));
        let ext_file = dir.join(format!("{stem}.ext"));
        run_openssl(dir, |c| {
            c.args(["req", "-new"])
                .args(EC_KEY)
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr)
                .args(["-subj", subject])
        })?;
        fs::write(&ext_file, ext).with_context(|| format!("writing {}", ext_file.display()))?;
        run_openssl(dir, |c| {
            c.args(["x509", "-req", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca)
                .arg("-CAkey")
                .arg(&self.ca_key)
                .args(["-CAcreateserial", "-days", "365", "-extfile"])
                .arg(&ext_file)
                .arg("-out")
                .arg(&cert)
        })?;
        Ok((cert, key))
    }
}

fn run_openssl(dir: &Path, args: impl FnOnce(&mut Command) -> &mut Command) -> Result<()> {
    let mut command = Command::new("openssl");
    command.current_dir(dir).stdin(Stdio::null());
    args(&mut command);
    let output = command
        .output()
        .context("running openssl (install it with `apt-get install openssl`)")?;
    if !output.status.success() {
        bail!(
            "{command:?} exited with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
