//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them (KIP-84): the four
//! messages, their parsing and formatting, and the key derivation. Pure functions without I/O,
//! so the broker's server side can reuse every piece; [`ScramClient`] is the client's state
//! machine on top of them.
//!
//! Invariants:
//! - parsing never panics and never allocates more than the message it reads: messages are at
//!   most [`MAX_MESSAGE_BYTES`], UTF-8, and every attribute is checked before it is used;
//! - the iteration count must be within Kafka's own bounds for the credentials it stores,
//!   [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`], so a server cannot weaken the exchange nor make
//!   the client spin;
//! - the server nonce must extend the client nonce, and the server's signature (`v=`) must
//!   match, or the exchange fails: a server that does not know the password is not trusted;
//! - no error message ever contains the password or a key derived from it.
//!
//! Like Kafka, the user name and password are used as their UTF-8 bytes (no SASLprep), no
//! channel binding is offered (`n,,`) and extensions are neither sent nor required.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SecureRandom as _;
use ring::{digest, hmac, pbkdf2};

/// Kafka's smallest iteration count (RFC 7677's "at least 4096").
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's largest iteration count: it refuses to store a credential with more.
pub const MAX_ITERATIONS: u32 = 16_384;
/// Longest SCRAM message accepted; real ones are about 100 to 200 bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Random bytes in a client nonce (32 base64 characters).
const NONCE_BYTES: usize = 24;
/// The GS2 header of a client without channel binding and without authzid, and its base64.
const GS2_HEADER: &str = "n,,";
const GS2_HEADER_BASE64: &str = "biws";

/// Why a SCRAM exchange cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed {message} message: {reason}")]
    Malformed {
        message: &'static str,
        reason: String,
    },
    #[error("the server nonce does not extend the client nonce")]
    NonceMismatch,
    #[error(
        "the server asks for {iterations} iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS} \
         (Kafka's bounds)"
    )]
    Iterations { iterations: String },
    #[error("the server refused the proof: {0}")]
    ServerError(String),
    #[error(
        "the server's signature does not match: it does not know this user's password, or \
         someone altered the exchange"
    )]
    ServerSignature,
    #[error("the client proof does not match")]
    ClientProof,
    #[error("no random nonce: the system's random source failed")]
    Random,
}

fn malformed(message: &'static str, reason: impl Into<String>) -> ScramError {
    ScramError::Malformed {
        message,
        reason: reason.into(),
    }
}

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramAlgorithm {
    Sha256,
    Sha512,
}

impl ScramAlgorithm {
    /// The SASL mechanism name: `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramAlgorithm::Sha256 => "SCRAM-SHA-256",
            ScramAlgorithm::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Length of a hash, of an HMAC and of every key, in bytes.
    pub fn output_len(self) -> usize {
        self.digest().output_len()
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramAlgorithm::Sha256 => &digest::SHA256,
            ScramAlgorithm::Sha512 => &digest::SHA512,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramAlgorithm::Sha256 => hmac::HMAC_SHA256,
            ScramAlgorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// HMAC(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    /// Hi(password, salt, i): PBKDF2 with this HMAC and one block of output.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let algorithm = match self {
            ScramAlgorithm::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramAlgorithm::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        };
        let mut out = vec![0; self.output_len()];
        pbkdf2::derive(algorithm, iterations, salt, password, &mut out);
        out
    }

    /// ClientKey, StoredKey and ServerKey of a salted password (a server stores the last two).
    pub fn keys(self, salted_password: &[u8]) -> ScramKeys {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramKeys {
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            client_key,
        }
    }

    /// ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage).
    pub fn client_proof(self, keys: &ScramKeys, auth_message: &str) -> Vec<u8> {
        let signature = self.hmac(&keys.stored_key, auth_message.as_bytes());
        xor(&keys.client_key, &signature)
    }

    /// ServerSignature = HMAC(ServerKey, AuthMessage).
    pub fn server_signature(self, server_key: &[u8], auth_message: &str) -> Vec<u8> {
        self.hmac(server_key, auth_message.as_bytes())
    }

    /// The server's check of a client proof against the StoredKey it keeps: ClientKey =
    /// proof XOR HMAC(StoredKey, AuthMessage) must hash to StoredKey (compared in constant time).
    pub fn verify_client_proof(
        self,
        stored_key: &[u8],
        auth_message: &str,
        proof: &[u8],
    ) -> Result<(), ScramError> {
        if proof.len() != self.output_len() {
            return Err(ScramError::ClientProof);
        }
        let signature = self.hmac(stored_key, auth_message.as_bytes());
        let client_key = xor(proof, &signature);
        if constant_time_eq(&self.hash(&client_key), stored_key) {
            Ok(())
        } else {
            Err(ScramError::ClientProof)
        }
    }

    /// The server's check of a PLAIN password against a stored SCRAM credential: Hi(password,
    /// salt, iterations) must lead to `stored_key` (compared in constant time). Costs the
    /// credential's PBKDF2 iterations: call it off the async threads.
    pub fn verify_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: NonZeroU32,
        stored_key: &[u8],
    ) -> bool {
        let keys = self.keys(&self.salted_password(password, salt, iterations));
        constant_time_eq(&keys.stored_key, stored_key)
    }

    /// The client's check of the server's signature (`v=`), in constant time.
    pub fn verify_server_signature(
        self,
        server_key: &[u8],
        auth_message: &str,
        signature: &[u8],
    ) -> Result<(), ScramError> {
        let key = hmac::Key::new(self.hmac_algorithm(), server_key);
        hmac::verify(&key, auth_message.as_bytes(), signature)
            .map_err(|_| ScramError::ServerSignature)
    }
}

/// The keys derived from a salted password. `Debug` shows only their lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScramKeys({} bytes each, redacted)",
            self.client_key.len()
        )
    }
}

/// AuthMessage = client-first-message-bare "," server-first-message ","
/// client-final-message-without-proof.
pub fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    client_final_bare: &str,
) -> String {
    format!("{client_first_bare},{server_first},{client_final_bare}")
}

/// A fresh client nonce: 24 random bytes as 32 base64 characters (printable, no `,`).
pub fn new_nonce() -> Result<String, ScramError> {
    let mut bytes = [0u8; NONCE_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ScramError::Random)?;
    Ok(BASE64.encode(bytes))
}

/// `saslname`: `=` becomes `=3D` and `,` becomes `=2C`.
pub fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The inverse of [`escape_username`]; any other `=` sequence is an error.
pub fn unescape_username(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        match escape {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => {
                return Err(malformed(
                    "client-first",
                    "the user name has a `=` that is not `=3D` or `=2C`",
                ));
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `client-first-message`: `gs2-header` then `n=user,r=nonce[,extensions]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The authorization identity of the GS2 header (`a=`), if any.
    pub authzid: Option<String>,
    pub username: String,
    pub nonce: String,
    /// Extensions after the nonce, as `key=value` (Kafka's `tokenauth=true`, for instance).
    pub extensions: Vec<(String, String)>,
}

impl ClientFirst {
    /// A first message without authzid and extensions.
    pub fn new(username: impl Into<String>, nonce: impl Into<String>) -> Self {
        ClientFirst {
            authzid: None,
            username: username.into(),
            nonce: nonce.into(),
            extensions: Vec::new(),
        }
    }

    /// `client-first-message-bare`: what goes into the AuthMessage.
    pub fn bare(&self) -> String {
        let mut bare = format!("n={},r={}", escape_username(&self.username), self.nonce);
        for (key, value) in &self.extensions {
            bare.push_str(&format!(",{key}={value}"));
        }
        bare
    }

    /// The whole message, with a GS2 header that refuses channel binding (`n`).
    pub fn message(&self) -> String {
        match &self.authzid {
            None => format!("{GS2_HEADER}{}", self.bare()),
            Some(a) => format!("n,a={},{}", escape_username(a), self.bare()),
        }
    }

    /// The GS2 header this message starts with (`n,,` or `n,a=authzid,`): what the client
    /// must send back, base64-encoded, as the final message's channel binding (`c=`).
    pub fn gs2_header(&self) -> String {
        match &self.authzid {
            None => GS2_HEADER.to_string(),
            Some(a) => format!("n,a={},", escape_username(a)),
        }
    }

    /// Parses a client's first message (the server side). Only `n` (no channel binding) is
    /// accepted, as Kafka does: `p=` (channel binding required) and `y` (the client could bind
    /// but thinks the server cannot) are refused, since no `-PLUS` mechanism is offered.
    pub fn parse(message: &[u8]) -> Result<Self, ScramError> {
        const WHAT: &str = "client-first";
        let text = text(WHAT, message)?;
        let mut parts = text.splitn(3, ',');
        let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(WHAT, "no GS2 header"));
        };
        if cbind != "n" {
            return Err(malformed(
                WHAT,
                "channel binding is not supported (the GS2 header must start with `n`)",
            ));
        }
        let authzid = match authzid {
            "" => None,
            a => Some(unescape_username(a.strip_prefix("a=").ok_or_else(
                || malformed(WHAT, "the GS2 header's second field is not `a=`"),
            )?)?),
        };
        let mut attributes = Attributes::new(WHAT, bare);
        if attributes.peek_key() == Some('m') {
            return Err(malformed(WHAT, "mandatory extensions are not supported"));
        }
        let username = unescape_username(attributes.expect('n')?)?;
        if username.is_empty() {
            return Err(malformed(WHAT, "empty user name"));
        }
        let nonce = check_nonce(WHAT, attributes.expect('r')?)?.to_string();
        let extensions = attributes.rest()?;
        Ok(ClientFirst {
            authzid,
            username,
            nonce,
            extensions,
        })
    }
}

/// `server-first-message`: `r=nonce,s=salt,i=iterations[,extensions]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// The client nonce followed by the server's own.
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl ServerFirst {
    pub fn message(&self) -> String {
        format!(
            "r={},s={},i={}",
            self.nonce,
            BASE64.encode(&self.salt),
            self.iterations
        )
    }

    /// Parses and checks a server's first message: mandatory extensions refused, a non-empty
    /// salt, an iteration count within [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`]. Whether the
    /// nonce extends the client's is [`ScramClient`]'s check.
    pub fn parse(message: &[u8]) -> Result<Self, ScramError> {
        const WHAT: &str = "server-first";
        let text = text(WHAT, message)?;
        let mut attributes = Attributes::new(WHAT, text);
        if attributes.peek_key() == Some('m') {
            return Err(malformed(WHAT, "mandatory extensions are not supported"));
        }
        let nonce = check_nonce(WHAT, attributes.expect('r')?)?.to_string();
        let salt = decode_base64(WHAT, "s", attributes.expect('s')?)?;
        if salt.is_empty() {
            return Err(malformed(WHAT, "empty salt"));
        }
        let iterations = parse_iterations(attributes.expect('i')?)?;
        attributes.rest()?;
        Ok(ServerFirst {
            nonce,
            salt,
            iterations,
        })
    }
}

/// `client-final-message`: `c=channel-binding,r=nonce,p=proof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// The GS2 header again, base64-encoded (`biws` for `n,,`).
    pub channel_binding: String,
    pub nonce: String,
    pub proof: Vec<u8>,
}

impl ClientFinal {
    /// `client-final-message-without-proof`: what goes into the AuthMessage.
    pub fn without_proof(&self) -> String {
        format!("c={},r={}", self.channel_binding, self.nonce)
    }

    pub fn message(&self) -> String {
        format!("{},p={}", self.without_proof(), BASE64.encode(&self.proof))
    }

    /// Parses a client's final message (the server side). Extensions between the nonce and
    /// the proof are not accepted.
    pub fn parse(message: &[u8]) -> Result<Self, ScramError> {
        const WHAT: &str = "client-final";
        let text = text(WHAT, message)?;
        let mut attributes = Attributes::new(WHAT, text);
        let channel_binding = attributes.expect('c')?.to_string();
        decode_base64(WHAT, "c", &channel_binding)?;
        let nonce = check_nonce(WHAT, attributes.expect('r')?)?.to_string();
        let proof = decode_base64(WHAT, "p", attributes.expect('p')?)?;
        if !attributes.rest()?.is_empty() {
            return Err(malformed(WHAT, "attributes after the proof"));
        }
        Ok(ClientFinal {
            channel_binding,
            nonce,
            proof,
        })
    }
}

/// `server-final-message`: the server's signature, or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFinal {
    /// `v=signature`.
    Verifier(Vec<u8>),
    /// `e=server-error-value` (`invalid-proof`, `unknown-user`, …).
    Error(String),
}

impl ServerFinal {
    pub fn message(&self) -> String {
        match self {
            ServerFinal::Verifier(v) => format!("v={}", BASE64.encode(v)),
            ServerFinal::Error(e) => format!("e={e}"),
        }
    }

    pub fn parse(message: &[u8]) -> Result<Self, ScramError> {
        const WHAT: &str = "server-final";
        let text = text(WHAT, message)?;
        let mut attributes = Attributes::new(WHAT, text);
        let result = match attributes.peek_key() {
            Some('e') => ServerFinal::Error(attributes.expect('e')?.to_string()),
            Some('v') => ServerFinal::Verifier(decode_base64(WHAT, "v", attributes.expect('v')?)?),
            _ => return Err(malformed(WHAT, "neither `v=` nor `e=`")),
        };
        attributes.rest()?;
        Ok(result)
    }
}

/// The client side of one exchange, before the server's first message.
pub struct ScramClient {
    algorithm: ScramAlgorithm,
    password: String,
    first: ClientFirst,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("algorithm", &self.algorithm)
            .field("first", &self.first)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The client side after its final message: what the server must sign.
#[derive(Debug)]
pub struct ScramClientFinal {
    algorithm: ScramAlgorithm,
    server_key: ScramKeys,
    auth_message: String,
}

impl ScramClient {
    /// A client for `username` with `nonce` (use [`new_nonce`]; tests pass a fixed one).
    pub fn new(
        algorithm: ScramAlgorithm,
        username: &str,
        password: &str,
        nonce: impl Into<String>,
    ) -> Self {
        ScramClient {
            algorithm,
            password: password.to_string(),
            first: ClientFirst::new(username, nonce),
        }
    }

    /// `client-first-message`.
    pub fn client_first(&self) -> String {
        self.first.message()
    }

    /// Checks the server's first message and computes `client-final-message`.
    pub fn handle_server_first(
        self,
        message: &[u8],
    ) -> Result<(ScramClientFinal, String), ScramError> {
        let server_first = ServerFirst::parse(message)?;
        if !server_first.nonce.starts_with(&self.first.nonce)
            || server_first.nonce.len() <= self.first.nonce.len()
        {
            return Err(ScramError::NonceMismatch);
        }
        let iterations =
            NonZeroU32::new(server_first.iterations).ok_or_else(|| ScramError::Iterations {
                iterations: "0".into(),
            })?;
        let salted = self.algorithm.salted_password(
            self.password.as_bytes(),
            &server_first.salt,
            iterations,
        );
        let keys = self.algorithm.keys(&salted);
        let mut client_final = ClientFinal {
            channel_binding: GS2_HEADER_BASE64.to_string(),
            nonce: server_first.nonce.clone(),
            proof: Vec::new(),
        };
        // The server-first message exactly as received goes into the AuthMessage.
        let server_first_text = text("server-first", message)?;
        let auth_message = auth_message(
            &self.first.bare(),
            server_first_text,
            &client_final.without_proof(),
        );
        client_final.proof = self.algorithm.client_proof(&keys, &auth_message);
        Ok((
            ScramClientFinal {
                algorithm: self.algorithm,
                server_key: keys,
                auth_message,
            },
            client_final.message(),
        ))
    }
}

impl ScramClientFinal {
    /// Checks the server's final message: an `e=` error, or a signature that does not match,
    /// fails the exchange.
    pub fn verify_server_final(&self, message: &[u8]) -> Result<(), ScramError> {
        match ServerFinal::parse(message)? {
            ServerFinal::Error(e) => Err(ScramError::ServerError(e)),
            ServerFinal::Verifier(signature) => self.algorithm.verify_server_signature(
                &self.server_key.server_key,
                &self.auth_message,
                &signature,
            ),
        }
    }
}

/// A message as text: bounded in length and UTF-8.
fn text<'a>(what: &'static str, message: &'a [u8]) -> Result<&'a str, ScramError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(malformed(
            what,
            format!("{} bytes, more than {MAX_MESSAGE_BYTES}", message.len()),
        ));
    }
    std::str::from_utf8(message).map_err(|_| malformed(what, "not UTF-8"))
}

/// The comma-separated `k=value` attributes of a message, read in order.
struct Attributes<'a> {
    what: &'static str,
    parts: std::iter::Peekable<std::str::Split<'a, char>>,
}

impl<'a> Attributes<'a> {
    fn new(what: &'static str, text: &'a str) -> Self {
        Attributes {
            what,
            parts: text.split(',').peekable(),
        }
    }

    fn peek_key(&mut self) -> Option<char> {
        let part = self.parts.peek()?;
        let mut chars = part.chars();
        match (chars.next(), chars.next()) {
            (Some(key), Some('=')) => Some(key),
            _ => None,
        }
    }

    /// The value of the next attribute, which must be `key`.
    fn expect(&mut self, key: char) -> Result<&'a str, ScramError> {
        let part = self
            .parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| malformed(self.what, format!("missing `{key}=`")))?;
        let mut chars = part.chars();
        match (chars.next(), chars.next()) {
            (Some(k), Some('=')) if k == key => Ok(&part[2..]),
            _ => Err(malformed(
                self.what,
                format!("expected `{key}=` where it has `{}`", clip(part)),
            )),
        }
    }

    /// The remaining attributes (extensions), each a letter-led `key=value`.
    fn rest(&mut self) -> Result<Vec<(String, String)>, ScramError> {
        self.parts
            .by_ref()
            .map(|part| match part.split_once('=') {
                Some((key, value))
                    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()) =>
                {
                    Ok((key.to_string(), value.to_string()))
                }
                _ => Err(malformed(
                    self.what,
                    format!("`{}` is not an attribute", clip(part)),
                )),
            })
            .collect()
    }
}

/// RFC 5802's `printable`: ASCII 0x21..=0x7E except `,` (already split on), not empty.
fn check_nonce<'a>(what: &'static str, nonce: &'a str) -> Result<&'a str, ScramError> {
    if nonce.is_empty() {
        return Err(malformed(what, "empty nonce"));
    }
    if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(malformed(
            what,
            "the nonce has characters outside printable ASCII",
        ));
    }
    Ok(nonce)
}

fn decode_base64(what: &'static str, key: &str, value: &str) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|e| malformed(what, format!("`{key}=` is not base64: {e}")))
}

fn parse_iterations(value: &str) -> Result<u32, ScramError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            "server-first",
            format!("`i={}` is not a number", clip(value)),
        ));
    }
    let out_of_range = || ScramError::Iterations {
        iterations: clip(value),
    };
    let iterations: u32 = value.parse().map_err(|_| out_of_range())?;
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(iterations)
    } else {
        Err(out_of_range())
    }
}

/// At most 32 characters of server-provided text, for error messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(32) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[path = "scram_tests.rs"]
mod tests;
