//! The subject of a client certificate as Kafka's default principal builder names it:
//! `X500Principal.getName()`, i.e. RFC 2253 — the RDNs last to first, `CN=…,OU=…,O=…,C=…`,
//! the keywords `CN C L ST O OU STREET DC UID`, any other attribute as its dotted OID with the
//! DER value in hex (`1.2.840.113549.1.9.1=#16…`), and `, + " \ < > ;` (and leading `#`, leading
//! or trailing spaces) escaped with a backslash.
//!
//! A minimal DER walk instead of an X.509 crate: the certificate has already been verified by
//! rustls/webpki, only the subject `Name` is needed, and a parser crate (x509-parser pulls in
//! nom, asn1-rs, der-parser, oid-registry and time) would add size to every edge binary for
//! ~150 lines of work. The walk is still defensive: every length is checked against what is
//! left, nothing is indexed blindly, and the fuzz target feeds it arbitrary bytes.

use std::fmt::Write as _;

/// Why a certificate's subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the certificate subject: {0}")]
pub struct DnError(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;

/// One DER element: its tag, its content, and the whole encoding (tag and length included).
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads one element off the front of `input`, returning it and what follows.
fn element(input: &[u8]) -> Result<(Element<'_>, &[u8]), DnError> {
    let (&tag, rest) = input.split_first().ok_or(DnError("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(DnError("multi-byte tags are not used in names"));
    }
    let (&first, rest) = rest.split_first().ok_or(DnError("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DnError("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(DnError("truncated"));
    }
    let header = input.len() - rest.len();
    Ok((
        Element {
            tag,
            content: &rest[..len],
            whole: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// Reads an element that must have `tag`.
fn expect(input: &[u8], tag: u8) -> Result<(Element<'_>, &[u8]), DnError> {
    let (e, rest) = element(input)?;
    if e.tag != tag {
        return Err(DnError("unexpected element"));
    }
    Ok((e, rest))
}

/// The subject of a DER certificate, RFC 2253 style (`CN=alice,OU=edge,O=Acme`).
pub fn subject(certificate: &[u8]) -> Result<String, DnError> {
    let (cert, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(cert.content, SEQUENCE)?;
    let mut rest = tbs.content;
    let (first, after) = element(rest)?;
    if first.tag == VERSION {
        rest = after;
    }
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (name, _) = expect(rest, SEQUENCE)?;
    name_rfc2253(name.content)
}

/// An RDNSequence's content as RFC 2253 text.
pub fn name_rfc2253(mut rdns: &[u8]) -> Result<String, DnError> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (rdn, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut avas = Vec::new();
        let mut set = rdn.content;
        while !set.is_empty() {
            let (ava, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(ava.content, OID)?;
            let (value, trailing) = element(value)?;
            if !trailing.is_empty() {
                return Err(DnError("trailing bytes in an attribute"));
            }
            avas.push(attribute(oid.content, &value)?);
        }
        if avas.is_empty() {
            return Err(DnError("empty RDN"));
        }
        parts.push(avas.join("+"));
    }
    parts.reverse();
    Ok(parts.join(","))
}

fn attribute(oid: &[u8], value: &Element<'_>) -> Result<String, DnError> {
    let dotted = dotted_oid(oid)?;
    let keyword = match dotted.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("STREET"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        _ => None,
    };
    match (keyword, string_value(value)) {
        (Some(keyword), Some(text)) => Ok(format!("{keyword}={}", escape(&text))),
        (keyword, _) => {
            let mut out = format!("{}=#", keyword.map_or(dotted.clone(), str::to_string));
            for b in value.whole {
                let _ = write!(out, "{b:02x}");
            }
            Ok(out)
        }
    }
}

/// The text of a directory string, if it is one.
fn string_value(value: &Element<'_>) -> Option<String> {
    let c = value.content;
    match value.tag {
        // UTF8String, PrintableString, IA5String.
        0x0c | 0x13 | 0x16 => std::str::from_utf8(c).ok().map(str::to_string),
        // TeletexString: read as Latin-1, as Java does.
        0x14 => Some(c.iter().map(|b| char::from(*b)).collect()),
        // BMPString: UTF-16BE.
        0x1e if c.len().is_multiple_of(2) => {
            let units: Vec<u16> = c
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1c if c.len().is_multiple_of(4) => c
            .chunks_exact(4)
            .map(|q| char::from_u32(u32::from_be_bytes([q[0], q[1], q[2], q[3]])))
            .collect(),
        _ => None,
    }
}

fn dotted_oid(oid: &[u8]) -> Result<String, DnError> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        if acc > (u64::MAX >> 7) {
            return Err(DnError("OID arc too large"));
        }
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (x, y) = match acc {
                    0..40 => (0, acc),
                    40..80 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.extend([x, y]);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == oid.len() {
            return Err(DnError("truncated OID"));
        }
    }
    if arcs.is_empty() {
        return Err(DnError("empty OID"));
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// RFC 2253 §2.4 escaping.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        out.extend_from_slice(content);
        out
    }

    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let ava = [tlv(OID, oid), tlv(tag, value)].concat();
        tlv(SET, &tlv(SEQUENCE, &ava))
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];

    fn certificate(subject: &[u8]) -> Vec<u8> {
        let tbs = [
            tlv(VERSION, &tlv(INTEGER, &[2])),
            tlv(INTEGER, &[1, 2, 3]),
            tlv(
                SEQUENCE,
                &tlv(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
            ),
            tlv(SEQUENCE, &rdn(CN, 0x0c, b"Test CA")),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, subject),
            tlv(SEQUENCE, &[]),
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat(),
        )
    }

    #[test]
    fn given_a_certificate_should_name_its_subject_last_rdn_first() {
        let subject = [
            rdn(C, 0x13, b"DE"),
            rdn(O, 0x0c, b"Acme, Inc."),
            rdn(CN, 0x0c, b"truck-7"),
        ]
        .concat();
        assert_eq!(
            super::subject(&certificate(&subject)),
            Ok("CN=truck-7,O=Acme\\, Inc.,C=DE".into())
        );
    }

    #[test]
    fn given_an_openssl_certificate_should_match_openssls_rfc2253_subject() {
        // `openssl req -x509 … -subj "/C=DE/O=Acme, Inc./OU=edge/CN=truck-7"`; `openssl x509
        // -noout -subject -nameopt RFC2253` prints the same.
        let der = include_bytes!("testdata/acme-truck-7.der");
        assert_eq!(
            subject(der),
            Ok("CN=truck-7,OU=edge,O=Acme\\, Inc.,C=DE".into())
        );
    }

    #[test]
    fn given_unusual_attributes_should_follow_java_rfc2253() {
        let email = rdn(EMAIL, 0x16, b"a@b");
        assert_eq!(
            name_rfc2253(&email),
            Ok("1.2.840.113549.1.9.1=#1603614062".into())
        );
        let bmp = rdn(CN, 0x1e, &[0, b' ', 0, b'x', 0, b' ']);
        assert_eq!(name_rfc2253(&bmp), Ok("CN=\\ x\\ ".into()));
        let multi = tlv(
            SET,
            &[
                tlv(SEQUENCE, &[tlv(OID, CN), tlv(0x0c, b"a")].concat()),
                tlv(SEQUENCE, &[tlv(OID, O), tlv(0x0c, b"#b")].concat()),
            ]
            .concat(),
        );
        assert_eq!(name_rfc2253(&multi), Ok("CN=a+O=\\#b".into()));
        assert_eq!(name_rfc2253(&[]), Ok(String::new()));
    }

    #[test]
    fn given_broken_der_should_fail_without_panicking() {
        let good = certificate(&rdn(CN, 0x0c, b"x"));
        for cut in 0..good.len() {
            let _ = subject(&good[..cut]);
        }
        assert!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(subject(&[0x30, 0x80]).is_err());
        assert!(name_rfc2253(&rdn(&[0x81], 0x0c, b"x")).is_err());
        assert!(name_rfc2253(&tlv(SET, &[])).is_err());
    }
}
