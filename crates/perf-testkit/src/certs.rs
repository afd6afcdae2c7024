//! `TestCertificates`: a private CA with a server certificate for 127.0.0.1 and a client
//! certificate, made by `openssl` for tests of TLS servers (`TempRedis::start_tls`, clusters).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{find_binary, scratch_dir};
use crate::TestkitError;

/// Certificates made for one test in a scratch directory under `target/perfkit-tmp/`: a
/// private CA ([`ca_cert`](Self::ca_cert)), a server certificate for 127.0.0.1 and
/// `localhost` signed by it ([`server_cert`](Self::server_cert),
/// [`server_key`](Self::server_key)) and a client certificate signed by it
/// ([`client_cert`](Self::client_cert), [`client_key`](Self::client_key)): P-256 keys, valid
/// for two days. Dropping the value removes the directory.
///
/// ```no_run
/// let certs = perf_testkit::TestCertificates::make().unwrap();
/// assert!(certs.ca_cert().exists() && certs.server_key().exists());
/// ```
#[derive(Debug)]
pub struct TestCertificates {
    dir: PathBuf,
}

impl TestCertificates {
    /// Makes the certificates with the `openssl` found on `PATH`
    /// ([`TestkitError::BinaryNotFound`] when there is none).
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(certs.dir().join("ca.crt").exists());
    /// ```
    pub fn make() -> Result<Self, TestkitError> {
        let openssl = find_binary("openssl").ok_or(TestkitError::BinaryNotFound {
            name: "openssl".into(),
            hint: "apt-get install openssl",
        })?;
        // Owned from here on, so a failure below removes the directory too.
        let certs = Self {
            dir: scratch_dir("redis-tls-certs")?,
        };
        make_certificates(&openssl, &certs.dir)?;
        Ok(certs)
    }

    /// The directory holding the files.
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(certs.dir().is_dir());
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The private CA's certificate (PEM) that signed the other two.
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(std::fs::read_to_string(certs.ca_cert()).unwrap().contains("CERTIFICATE"));
    /// ```
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The server certificate (PEM) for 127.0.0.1 and `localhost`.
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(certs.server_cert().exists());
    /// ```
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The private key (PEM) of [`server_cert`](Self::server_cert).
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(certs.server_key().exists());
    /// ```
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate (PEM).
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(certs.client_cert().exists());
    /// ```
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// The private key (PEM, PKCS#8) of [`client_cert`](Self::client_cert).
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert!(certs.client_key().exists());
    /// ```
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

impl TestCertificates {
    /// The `redis-server` arguments of a TLS server with these certificates: its certificate
    /// and key, the CA that client certificates must chain to, and the client certificate the
    /// server itself presents when it connects to others (cluster bus, replication).
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert_eq!(certs.server_args()[0], "--tls-cert-file");
    /// ```
    pub fn server_args(&self) -> Vec<OsString> {
        flags([
            ("--tls-cert-file", self.server_cert()),
            ("--tls-key-file", self.server_key()),
            ("--tls-ca-cert-file", self.ca_cert()),
            ("--tls-client-cert-file", self.client_cert()),
            ("--tls-client-key-file", self.client_key()),
        ])
    }

    /// The `redis-cli` arguments of a TLS connection that trusts the CA and presents the
    /// client certificate.
    ///
    /// ```no_run
    /// let certs = perf_testkit::TestCertificates::make().unwrap();
    /// assert_eq!(certs.cli_args()[0], "--tls");
    /// ```
    pub fn cli_args(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("--tls")];
        args.extend(flags([
            ("--cacert", self.ca_cert()),
            ("--cert", self.client_cert()),
            ("--key", self.client_key()),
        ]));
        args
    }
}

/// `flag path flag path ...`
fn flags<const N: usize>(pairs: [(&str, PathBuf); N]) -> Vec<OsString> {
    pairs
        .into_iter()
        .flat_map(|(flag, path)| [OsString::from(flag), path.into_os_string()])
        .collect()
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes, in `dir`, a private CA (`ca.crt`, `ca.key`), a server certificate for 127.0.0.1
/// (`server.crt`, `server.key`) and a client certificate (`client.crt`, `client.key`), both
/// signed by the CA: P-256 keys, valid for two days.
fn make_certificates(openssl: &Path, dir: &Path) -> Result<(), TestkitError> {
    let run = |args: &[&str]| -> Result<(), TestkitError> {
        let out = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestkitError::io(format!("running {}", openssl.display()), e))?;
        if out.status.success() {
            return Ok(());
        }
        let output: String = String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(600)
            .collect();
        Err(TestkitError::CommandFailed {
            command: format!("openssl {}", args.join(" ")),
            status: out.status.to_string(),
            output,
        })
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| TestkitError::io(format!("writing {name}"), e))
    };
    // Every certificate is made the same way, a request then `x509 -req` with an extension
    // file, so its extensions are exactly these: `req -x509 -addext` would add a second
    // basicConstraints next to openssl.cnf's on OpenSSL 1.1.1, which rustls rejects.
    for (name, self_signed, ext) in [
        (
            "ca",
            true,
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
        ),
        (
            "server",
            false,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ),
        (
            "client",
            false,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let (subj, key_file, csr, crt, ext_file) = (
            format!("/CN=perfkit test {name}"),
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        write(&ext_file, ext)?;
        run(&[
            &["req"][..],
            &key[..],
            &["-subj", &subj, "-keyout", &key_file, "-out", &csr],
        ]
        .concat())?;
        let sign: &[&str] = if self_signed {
            &["-signkey", &key_file]
        } else {
            &["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"]
        };
        run(&[
            &["x509", "-req", "-in", &csr, "-days", "2", "-out", &crt, "-extfile", &ext_file][..],
            sign,
        ]
        .concat())?;
    }
    Ok(())
}
